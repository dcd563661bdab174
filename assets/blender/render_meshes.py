"""Render vertex-coloured meshes from given cameras as RGBA PNGs (Blender, headless).

Run inside Blender::

    blender -b --factory-startup --python-exit-code 1 -P assets/blender/render_meshes.py -- JOB.json

``JOB.json``::

    {"width": 256, "height": 256, "camera_angle_x": 0.69, "samples": 16,
     "meshes": [{"ply": "/abs/pose_00.ply",
                 "views": [{"c2w": [[...4 rows...]], "out": "/abs/train/p00_v00.png"}, ...]}, ...]}

Each mesh is a PLY with per-vertex RGB (already shaded: the colours are emitted as they are,
so Cycles only resolves visibility and anti-aliasing and the images are free of Monte Carlo
noise). ``c2w`` is a camera-to-world matrix with OpenGL camera axes (x right, y up, looking
down -z), the NeRF-synthetic convention, in the mesh's own coordinates. The background is
transparent (film_transparent): the PNG's alpha is the object's mask.

Used by ``benchmarks/avatar.py`` to render the posed-body benchmark data.
"""
import json
import sys

import bpy
from mathutils import Matrix


def _job() -> dict:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if len(argv) != 1:
        raise SystemExit("usage: blender -b -P render_meshes.py -- JOB.json")
    with open(argv[0]) as handle:
        return json.load(handle)


def _emission_material() -> bpy.types.Material:
    material = bpy.data.materials.new("vertex_colour_emission")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    attribute = nodes.new("ShaderNodeVertexColor")
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(attribute.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def _import_ply(path: str, material: bpy.types.Material) -> bpy.types.Object:
    bpy.ops.import_mesh.ply(filepath=path)
    mesh_object = bpy.context.selected_objects[0]
    mesh_object.data.materials.append(material)
    return mesh_object


def main() -> None:
    job = _job()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(job.get("samples", 16))
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0
    scene.render.resolution_x, scene.render.resolution_y = int(job["width"]), int(job["height"])
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"  # the emitted sRGB colours come back unchanged
    world = bpy.data.worlds.new("black")
    world.color = (0.0, 0.0, 0.0)
    scene.world = world
    camera_data = bpy.data.cameras.new("camera")
    camera_data.sensor_fit = "HORIZONTAL"
    camera_data.angle_x = float(job["camera_angle_x"])
    camera_data.clip_start, camera_data.clip_end = 0.05, 100.0
    camera = bpy.data.objects.new("camera", camera_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    material = _emission_material()
    for entry in job["meshes"]:
        mesh_object = _import_ply(entry["ply"], material)
        for view in entry["views"]:
            camera.matrix_world = Matrix(view["c2w"])
            scene.render.filepath = view["out"]
            bpy.ops.render.render(write_still=True)
        bpy.data.objects.remove(mesh_object, do_unlink=True)


main()
