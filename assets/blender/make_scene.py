"""Build and render a small procedural object-centric scene in the NeRF-synthetic layout.

Run inside Blender (headless)::

    blender -b --factory-startup --python-exit-code 1 -P assets/blender/make_scene.py -- \
        --out assets/demo --resolution 160 --train 36 --val 6 --test 10 --seed 0

Everything is made here from primitives and procedural shader nodes (brick, voronoi,
checker, wave, noise): no downloaded model or image texture. The output folder gets
``transforms_{train,val,test}.json`` (``camera_angle_x`` and per frame ``file_path``
without extension plus the camera-to-world ``transform_matrix`` in Blender/OpenGL camera
axes), the rendered images ``{split}/r_{i}.png`` (RGBA, transparent background) and the
scene geometry ``mesh.ply`` (binary PLY, triangles, world frame).

With ``--jpeg-on-white`` the images are composited over white and written as
``{split}/r_{i}.jpg`` (for structure-from-motion scenes) instead of RGBA PNG.

Cameras look at the centre of the scene's bounding box from a sphere of radius ``--distance``: train and val
views are drawn uniformly on the upper hemisphere (elevation between ``--min-elevation``
and 85 degrees), test views follow an orbit at 30 degrees elevation.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import struct
import sys
from pathlib import Path

import bpy
from mathutils import Matrix, Vector

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resolution", type=int, default=160, help="square image size in pixels")
    parser.add_argument("--train", type=int, default=32, help="number of train views")
    parser.add_argument("--val", type=int, default=4, help="number of val views")
    parser.add_argument("--test", type=int, default=8, help="number of test views (orbit)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random camera placement")
    parser.add_argument("--samples", type=int, default=256, help="Cycles samples per pixel")
    parser.add_argument("--distance", type=float, default=4.1, help="camera distance from the scene centre")
    parser.add_argument("--camera-angle-x", type=float, default=0.69, help="horizontal field of view in radians")
    parser.add_argument("--min-elevation", type=float, default=5.0, help="lowest train/val elevation in degrees")
    parser.add_argument("--jpeg-on-white", action="store_true", help="write JPEG composited on white, not RGBA PNG")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality with --jpeg-on-white")
    parser.add_argument("--kind", choices=sorted(SCENE_KINDS), default="still_life",
                        help="which objects: still_life (the demo's), textured (fine high-contrast textures), "
                             "thin (thin legs, rods and a wire ring), cluster (seven separate small objects)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- materials
def _principled(name: str) -> tuple[bpy.types.Material, bpy.types.NodeTree, bpy.types.Node]:
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    tree = material.node_tree
    bsdf = tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.75
    bsdf.inputs["Specular"].default_value = 0.2
    return material, tree, bsdf


def _object_coordinates(tree: bpy.types.NodeTree) -> bpy.types.NodeSocket:
    return tree.nodes.new("ShaderNodeTexCoord").outputs["Object"]


def _plane_coordinates(tree: bpy.types.NodeTree, u_axis: tuple, v_axis: tuple) -> bpy.types.NodeSocket:
    """Object coordinates projected to ``(dot(p, u_axis), dot(p, v_axis), 0)`` for 2D patterns."""
    coords = _object_coordinates(tree)
    plane = tree.nodes.new("ShaderNodeCombineXYZ")
    for axis, component in ((u_axis, "X"), (v_axis, "Y")):
        dot = tree.nodes.new("ShaderNodeVectorMath")
        dot.operation = "DOT_PRODUCT"
        dot.inputs[1].default_value = axis
        tree.links.new(coords, dot.inputs[0])
        tree.links.new(dot.outputs["Value"], plane.inputs[component])
    return plane.outputs["Vector"]


def _multiply(tree: bpy.types.NodeTree, first: bpy.types.NodeSocket, second: bpy.types.NodeSocket,
              fac: float = 1.0) -> bpy.types.NodeSocket:
    """``first`` multiplied by ``second`` (a MixRGB in MULTIPLY mode, blended in by ``fac``)."""
    mix = tree.nodes.new("ShaderNodeMixRGB")
    mix.blend_type = "MULTIPLY"
    mix.inputs["Fac"].default_value = fac
    tree.links.new(first, mix.inputs["Color1"])
    tree.links.new(second, mix.inputs["Color2"])
    return mix.outputs["Color"]


def brick_material() -> bpy.types.Material:
    """Bricks in two warm colours, dark mortar, speckled by fine noise."""
    material, tree, bsdf = _principled("brick")
    brick = tree.nodes.new("ShaderNodeTexBrick")
    brick.inputs["Scale"].default_value = 2.8
    brick.inputs["Color1"].default_value = (0.8, 0.2, 0.08, 1.0)
    brick.inputs["Color2"].default_value = (0.95, 0.65, 0.15, 1.0)
    brick.inputs["Mortar"].default_value = (0.03, 0.03, 0.05, 1.0)
    brick.inputs["Mortar Size"].default_value = 0.03
    brick.offset = 0.5
    # Bricks are a 2D pattern: u = x + y, v = z + 0.35 (x - y) gives every face of the cube,
    # the top included, (slightly sheared) courses.
    tree.links.new(_plane_coordinates(tree, (1.0, 1.0, 0.0), (0.35, -0.35, 1.0)), brick.inputs["Vector"])
    speckle = tree.nodes.new("ShaderNodeTexNoise")
    speckle.inputs["Scale"].default_value = 14.0
    speckle.inputs["Detail"].default_value = 2.0
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.interpolation = "CONSTANT"
    ramp.color_ramp.elements[0].color = (0.3, 0.45, 0.9, 1.0)
    ramp.color_ramp.elements[1].position = 0.6
    ramp.color_ramp.elements[1].color = (1.0, 1.0, 1.0, 1.0)
    tree.links.new(speckle.outputs["Fac"], ramp.inputs["Fac"])
    tree.links.new(_multiply(tree, brick.outputs["Color"], ramp.outputs["Color"]), bsdf.inputs["Base Color"])
    return material


def voronoi_material() -> bpy.types.Material:
    """Randomly coloured voronoi cells with dark cell borders."""
    material, tree, bsdf = _principled("voronoi")
    coords = _object_coordinates(tree)
    cells = tree.nodes.new("ShaderNodeTexVoronoi")
    cells.inputs["Scale"].default_value = 7.0
    tree.links.new(coords, cells.inputs["Vector"])
    borders = tree.nodes.new("ShaderNodeTexVoronoi")
    borders.feature = "DISTANCE_TO_EDGE"
    borders.inputs["Scale"].default_value = 7.0
    tree.links.new(coords, borders.inputs["Vector"])
    edge = tree.nodes.new("ShaderNodeMath")
    edge.operation = "GREATER_THAN"
    edge.inputs[1].default_value = 0.04
    tree.links.new(borders.outputs["Distance"], edge.inputs[0])
    cell_colours = _multiply(tree, cells.outputs["Color"], edge.outputs["Value"])
    brighten = tree.nodes.new("ShaderNodeHueSaturation")
    brighten.inputs["Saturation"].default_value = 1.4
    brighten.inputs["Value"].default_value = 1.5
    tree.links.new(cell_colours, brighten.inputs["Color"])
    tree.links.new(brighten.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def _wave_bands(tree: bpy.types.NodeTree, coordinates: bpy.types.NodeSocket, scale: float, threshold: float, *,
                rings: bool = False, distortion: float = 0.0) -> bpy.types.NodeSocket:
    """1 where a wave texture (bands along z, or rings) of ``coordinates`` exceeds ``threshold``, else 0."""
    wave = tree.nodes.new("ShaderNodeTexWave")
    if rings:
        wave.wave_type = "RINGS"
    else:
        wave.bands_direction = "Z"
    wave.inputs["Scale"].default_value = scale
    wave.inputs["Distortion"].default_value = distortion
    tree.links.new(coordinates, wave.inputs["Vector"])
    band = tree.nodes.new("ShaderNodeMath")
    band.operation = "GREATER_THAN"
    band.inputs[1].default_value = threshold
    tree.links.new(wave.outputs["Fac"], band.inputs[0])
    return band.outputs["Value"]


def checker_wave_material() -> bpy.types.Material:
    """A green/cream checker board crossed by sharp blue wave bands."""
    material, tree, bsdf = _principled("checker_wave")
    coords = _object_coordinates(tree)
    checker = tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 6.0
    checker.inputs["Color1"].default_value = (0.1, 0.55, 0.15, 1.0)
    checker.inputs["Color2"].default_value = (0.95, 0.9, 0.7, 1.0)
    tree.links.new(coords, checker.inputs["Vector"])
    mix = tree.nodes.new("ShaderNodeMixRGB")
    mix.inputs["Color2"].default_value = (0.05, 0.15, 0.8, 1.0)
    tree.links.new(_wave_bands(tree, coords, 2.5, 0.8, rings=True, distortion=4.0), mix.inputs["Fac"])
    tree.links.new(checker.outputs["Color"], mix.inputs["Color1"])
    tree.links.new(mix.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def magic_material() -> bpy.types.Material:
    """Fine, high-contrast swirls (a magic texture at high scale) over saturated colour noise."""
    material, tree, bsdf = _principled("magic")
    coords = _object_coordinates(tree)
    magic = tree.nodes.new("ShaderNodeTexMagic")
    magic.turbulence_depth = 4
    magic.inputs["Scale"].default_value = 9.0
    magic.inputs["Distortion"].default_value = 1.5
    tree.links.new(coords, magic.inputs["Vector"])
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 3.0
    tree.links.new(coords, noise.inputs["Vector"])
    tree.links.new(_multiply(tree, magic.outputs["Color"], noise.outputs["Color"], 0.6), bsdf.inputs["Base Color"])
    return material


def stripes_material(scale: float, color1: tuple, color2: tuple, glossy: bool = False) -> bpy.types.Material:
    """Sharp stripes of two colours along the object's z axis (glossy: a shinier, view-dependent surface)."""
    material, tree, bsdf = _principled(f"stripes_{scale}")
    if glossy:
        bsdf.inputs["Roughness"].default_value = 0.3
        bsdf.inputs["Specular"].default_value = 0.6
    mix = tree.nodes.new("ShaderNodeMixRGB")
    mix.inputs["Color1"].default_value = (*color1, 1.0)
    mix.inputs["Color2"].default_value = (*color2, 1.0)
    tree.links.new(_wave_bands(tree, _object_coordinates(tree), scale, 0.5), mix.inputs["Fac"])
    tree.links.new(mix.outputs["Color"], bsdf.inputs["Base Color"])
    return material


# ---------------------------------------------------------------------------- geometry
def _finish(obj: bpy.types.Object, material: bpy.types.Material, smooth: bool) -> None:
    """Give the active, just-created ``obj`` its material and shading."""
    obj.data.materials.append(material)
    if smooth:
        bpy.ops.object.shade_smooth()


def build_objects() -> list[bpy.types.Object]:
    """A bevelled brick cube, a voronoi sphere on top of it and a checker cylinder beside it."""
    bpy.ops.mesh.primitive_cube_add(size=0.9, location=(0.0, 0.0, -0.35))
    cube = bpy.context.active_object
    cube.name = "cube"
    bevel = cube.modifiers.new("bevel", "BEVEL")
    bevel.width = 0.04
    bevel.segments = 2
    _finish(cube, brick_material(), smooth=False)

    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=0.42, location=(0.0, 0.0, 0.53))
    sphere = bpy.context.active_object
    sphere.name = "sphere"
    _finish(sphere, voronoi_material(), smooth=True)

    bpy.ops.mesh.primitive_cylinder_add(vertices=40, radius=0.22, depth=0.9, location=(0.72, 0.42, -0.35))
    cylinder = bpy.context.active_object
    cylinder.name = "cylinder"
    _finish(cylinder, checker_wave_material(), smooth=False)

    bpy.ops.mesh.primitive_torus_add(
        major_radius=0.28, minor_radius=0.09, major_segments=40, minor_segments=12,
        location=(-0.45, 0.72, -0.71),
    )
    torus = bpy.context.active_object
    torus.name = "torus"
    _finish(torus, checker_wave_material(), smooth=True)
    return [cube, sphere, cylinder, torus]


def _added(name: str, material: bpy.types.Material, smooth: bool, subdivide: int = 0) -> bpy.types.Object:
    """Name, (optionally) subdivide and give a material to the object just added."""
    obj = bpy.context.active_object
    obj.name = name
    if subdivide:
        modifier = obj.modifiers.new("subdivide", "SUBSURF")
        modifier.levels = modifier.render_levels = subdivide
    _finish(obj, material, smooth)
    return obj


def build_textured() -> list[bpy.types.Object]:
    """A subdivided monkey head in fine swirls on a striped, rounded pedestal, and a voronoi ball."""
    bpy.ops.mesh.primitive_monkey_add(size=1.1, location=(0.0, 0.0, 0.25), rotation=(0.0, 0.0, math.radians(-30)))
    head = _added("head", magic_material(), smooth=True, subdivide=2)
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.1, -0.62), scale=(0.8, 0.6, 0.22))
    pedestal = bpy.context.active_object
    bevel = pedestal.modifiers.new("bevel", "BEVEL")
    bevel.width = 0.06
    bevel.segments = 3
    pedestal = _added("pedestal", stripes_material(18.0, (0.05, 0.05, 0.08), (0.9, 0.85, 0.2)), smooth=False)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=0.25, location=(0.7, -0.45, -0.55))
    ball = _added("ball", voronoi_material(), smooth=True)
    return [head, pedestal, ball]


def build_thin() -> list[bpy.types.Object]:
    """A small table (a thin top on four thin legs), a wire ring on a rod and a slender cone."""
    objects = []
    bpy.ops.mesh.primitive_cylinder_add(vertices=48, radius=0.55, depth=0.04, location=(0.0, 0.0, 0.0))
    objects.append(_added("table_top", checker_wave_material(), smooth=False))
    for index, (x, y) in enumerate(((0.35, 0.35), (-0.35, 0.35), (0.35, -0.35), (-0.35, -0.35))):
        bpy.ops.mesh.primitive_cylinder_add(vertices=16, radius=0.025, depth=0.8, location=(x, y, -0.42))
        objects.append(_added(f"leg_{index}", stripes_material(10.0, (0.6, 0.1, 0.05), (0.95, 0.9, 0.8)),
                              smooth=True))
    bpy.ops.mesh.primitive_cylinder_add(vertices=16, radius=0.02, depth=0.6, location=(0.1, 0.0, 0.32))
    objects.append(_added("rod", stripes_material(6.0, (0.1, 0.1, 0.1), (0.2, 0.6, 0.9)), smooth=True))
    bpy.ops.mesh.primitive_torus_add(major_radius=0.3, minor_radius=0.025, major_segments=64, minor_segments=12,
                                     location=(0.1, 0.0, 0.62), rotation=(math.radians(90), 0.0, 0.0))
    objects.append(_added("ring", stripes_material(14.0, (0.9, 0.3, 0.6), (0.1, 0.1, 0.3), glossy=True),
                          smooth=True))
    bpy.ops.mesh.primitive_cone_add(vertices=32, radius1=0.12, radius2=0.0, depth=0.7, location=(-0.3, 0.2, 0.37))
    objects.append(_added("cone", voronoi_material(), smooth=True))
    return objects


def build_cluster() -> list[bpy.types.Object]:
    """Seven separate small objects with gaps between them, several materials, one glossy."""
    objects = []
    placements = (
        ("ico", (-0.6, -0.5, -0.5), voronoi_material()),
        ("cube", (0.55, -0.55, -0.6), brick_material()),
        ("cone", (0.0, 0.65, -0.5), magic_material()),
        ("torus", (-0.55, 0.5, -0.1), checker_wave_material()),
        ("cylinder", (0.6, 0.45, -0.2), stripes_material(12.0, (0.1, 0.3, 0.7), (0.95, 0.95, 0.9), glossy=True)),
        ("sphere", (0.0, 0.0, 0.2), stripes_material(7.0, (0.9, 0.4, 0.05), (0.2, 0.05, 0.2))),
        ("small_cube", (0.05, -0.1, -0.55), magic_material()),
    )
    for name, location, material in placements:
        if name == "ico":
            bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, radius=0.3, location=location)
        elif name in ("cube", "small_cube"):
            bpy.ops.mesh.primitive_cube_add(size=0.45 if name == "cube" else 0.3, location=location,
                                            rotation=(0.0, 0.0, math.radians(25)))
        elif name == "cone":
            bpy.ops.mesh.primitive_cone_add(vertices=32, radius1=0.25, radius2=0.05, depth=0.5, location=location)
        elif name == "torus":
            bpy.ops.mesh.primitive_torus_add(major_radius=0.24, minor_radius=0.08, major_segments=40,
                                             minor_segments=12, location=location,
                                             rotation=(math.radians(60), 0.0, 0.0))
        elif name == "cylinder":
            bpy.ops.mesh.primitive_cylinder_add(vertices=32, radius=0.15, depth=0.7, location=location)
        else:
            bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=0.3, location=location)
        objects.append(_added(name, material, smooth=name in ("sphere", "torus", "cylinder")))
    return objects


SCENE_KINDS = {"still_life": build_objects, "textured": build_textured, "thin": build_thin, "cluster": build_cluster}


def world_triangles(objects: list[bpy.types.Object]) -> tuple[list[Vector], list[tuple[int, int, int]]]:
    """Evaluated (modifiers applied) geometry of ``objects``: world-space vertices and triangles."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    vertices, triangles = [], []
    for obj in objects:
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        mesh.calc_loop_triangles()
        offset = len(vertices)
        vertices.extend(obj.matrix_world @ v.co for v in mesh.vertices)
        triangles.extend(tuple(offset + i for i in t.vertices) for t in mesh.loop_triangles)
        evaluated.to_mesh_clear()
    return vertices, triangles


def write_mesh_ply(vertices: list[Vector], triangles: list[tuple[int, int, int]], path: Path) -> None:
    """Write the triangle mesh as a binary little-endian PLY (float32 x y z, int32 indices)."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(triangles)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    body = b"".join(struct.pack("<3f", *v) for v in vertices)
    body += b"".join(struct.pack("<B3i", 3, *t) for t in triangles)
    path.write_bytes(header + body)


# ---------------------------------------------------------------------------- lights, render
def setup_world_and_lights() -> None:
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    background.inputs["Strength"].default_value = 0.55
    for name, energy, rotation in (("key", 3.0, (0.6, 0.15, 0.8)), ("fill", 1.0, (2.2, 0.0, -2.4))):
        light = bpy.data.lights.new(name, "SUN")
        light.energy = energy
        light.angle = math.radians(10.0)
        obj = bpy.data.objects.new(name, light)
        obj.rotation_euler = rotation
        bpy.context.scene.collection.objects.link(obj)


def setup_render(args: argparse.Namespace) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = 0.02
    scene.cycles.max_bounces = 3
    # Debian's Blender is built without OpenImageDenoise: noise is kept low by samples instead.
    scene.cycles.use_denoising = False
    scene.render.resolution_x = args.resolution
    scene.render.resolution_y = args.resolution
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    settings = scene.render.image_settings
    if args.jpeg_on_white:
        settings.file_format = "JPEG"
        settings.color_mode = "RGB"
        settings.quality = args.jpeg_quality
        composite_on_white(scene)
    else:
        settings.file_format = "PNG"
        settings.color_mode = "RGBA"
        settings.color_depth = "8"
        settings.compression = 100


def composite_on_white(scene: bpy.types.Scene) -> None:
    """Route the render through an Alpha Over node onto a white background."""
    scene.use_nodes = True
    tree = scene.node_tree
    tree.nodes.clear()
    layers = tree.nodes.new("CompositorNodeRLayers")
    over = tree.nodes.new("CompositorNodeAlphaOver")
    over.inputs[1].default_value = (1.0, 1.0, 1.0, 1.0)
    output = tree.nodes.new("CompositorNodeComposite")
    output.use_alpha = False
    tree.links.new(layers.outputs["Image"], over.inputs[2])
    tree.links.new(over.outputs["Image"], output.inputs["Image"])


def make_camera(angle_x: float) -> bpy.types.Object:
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.angle_x = angle_x
    data.clip_start = 0.05
    data.clip_end = 100.0
    camera = bpy.data.objects.new("camera", data)
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    return camera


# ---------------------------------------------------------------------------- cameras
def look_at(eye: Vector, target: Vector) -> Matrix:
    """4x4 camera-to-world pose with OpenGL axes (looking down -z, y up) aimed at ``target``."""
    back = (eye - target).normalized()
    right = Vector((0.0, 0.0, 1.0)).cross(back).normalized()
    up = back.cross(right)
    pose = Matrix.Identity(4)
    for column, axis in enumerate((right, up, back, eye)):
        for row in range(3):
            pose[row][column] = axis[row]
    return pose


def sphere_point(center: Vector, azimuth: float, elevation: float, distance: float) -> Vector:
    direction = Vector((math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)))
    return center + distance * direction


def camera_poses(args: argparse.Namespace, center: Vector) -> dict[str, list[Matrix]]:
    """Camera-to-world poses per split looking at ``center``: random upper hemisphere for train/val, an orbit for test."""
    rng = random.Random(args.seed)
    low, high = math.sin(math.radians(args.min_elevation)), math.sin(math.radians(85.0))

    def random_views(count: int) -> list[Matrix]:
        # Uniform on the sphere zone: sin(elevation) uniform, azimuth uniform.
        views = []
        for _ in range(count):
            elevation = math.asin(rng.uniform(low, high))
            azimuth = rng.uniform(0.0, 2.0 * math.pi)
            views.append(look_at(sphere_point(center, azimuth, elevation, args.distance), center))
        return views

    orbit = [
        look_at(sphere_point(center, 2.0 * math.pi * i / max(args.test, 1) + 0.3, math.radians(30.0), args.distance), center)
        for i in range(args.test)
    ]
    return {"train": random_views(args.train), "val": random_views(args.val), "test": orbit}


def render_split(camera: bpy.types.Object, split: str, poses: list[Matrix], args: argparse.Namespace) -> None:
    extension = ".jpg" if args.jpeg_on_white else ".png"
    frames = []
    for index, pose in enumerate(poses):
        camera.matrix_world = pose
        bpy.context.view_layer.update()
        relative = f"./{split}/r_{index}"
        bpy.context.scene.render.filepath = str(args.out / (relative[2:] + extension))
        bpy.ops.render.render(write_still=True)
        frames.append({"file_path": relative, "transform_matrix": [list(map(float, row)) for row in camera.matrix_world]})
    transforms = {"camera_angle_x": float(camera.data.angle_x), "frames": frames}
    (args.out / f"transforms_{split}.json").write_text(json.dumps(transforms, indent=2) + "\n")


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    objects = SCENE_KINDS[args.kind]()
    setup_world_and_lights()
    setup_render(args)
    camera = make_camera(args.camera_angle_x)
    vertices, triangles = world_triangles(objects)
    write_mesh_ply(vertices, triangles, args.out / "mesh.ply")
    center = Vector([0.5 * (min(v[k] for v in vertices) + max(v[k] for v in vertices)) for k in range(3)])
    for split, poses in camera_poses(args, center).items():
        render_split(camera, split, poses, args)


if __name__ == "__main__":
    main()
