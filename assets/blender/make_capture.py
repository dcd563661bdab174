"""Render a simulated handheld phone capture of an object in a furnished room (nerfstudio layout).

Run inside Blender (headless)::

    # quick debug run (small frames), plus the pinhole images and an independent check render
    nice -n 19 blender -b --factory-startup --python-exit-code 1 -P assets/blender/make_capture.py -- \
        --out /tmp/capture_test --width 270 --height 480 --frames 8 --seed 0 \
        --pinhole-dir /tmp/capture_test_pinhole --check-render /tmp/capture_test_check

    # the evaluation captures as rendered on a shared 2-core CPU (about 27 s a frame: 8 samples,
    # pinhole rendered at half resolution and upsampled inside the distortion warp)
    nice -n 19 blender -b --factory-startup --python-exit-code 1 -P assets/blender/make_capture.py -- \
        --out /work/captures/room50 --frames 50 --seed 0 --samples 8 --render-scale 0.5 \
        --pinhole-dir /work/captures/room50_pinhole
    nice -n 19 blender -b --factory-startup --python-exit-code 1 -P assets/blender/make_capture.py -- \
        --out /work/captures/room150 --frames 150 --seed 1 --samples 8 --render-scale 0.5

    # full quality (defaults: 32 samples, native resolution; about 8x slower)
    nice -n 19 blender -b --factory-startup --python-exit-code 1 -P assets/blender/make_capture.py -- \
        --out /work/captures/room50_hq --frames 50 --seed 0

An "unbounded" indoor scene for testing real-capture handling: a 6 m x 5 m x 2.8 m room (plank
floor, four differently papered walls, ceiling, two open windows onto a gradient sky and a sun,
a door, a sofa, a book shelf, a rug, a floor lamp, boxes, pictures) with a table in the middle
carrying the object of interest (a textured vase with a mug, a book, a ball and a small box,
about 40 cm across). Everything is built here from primitives and procedural shader nodes (some
borrowed from ``make_scene.py``); no downloaded asset. The room is the same for every ``--seed``:
the seed only drives the cameras and the exposure jitter.

Cameras: a walk once around the table (an ellipse 1.35-1.85 m from the object horizontally,
eye height 1.3-1.7 m varying slowly), aimed at the object, with per-frame handheld jitter
(position sigma 2 cm, at most 5 cm per axis; yaw/pitch sigma 1.2 deg and roll sigma 1.5 deg,
each at most 3 deg). Portrait ``--width`` x ``--height`` (1080 x 1920) with a horizontal field of
view of ``--hfov`` = 56 deg (vertical 86.5 deg at 9:16): a phone's main ~26 mm-equivalent
lens in a 9:16 crop is 45-55 deg across, we take the wide end so the object keeps room context.
The principal point is off centre by ``--principal-offset`` pixels, as real phones are.

Phone effects, applied in numpy after Cycles (not in the compositor):

1. Lens distortion (OpenCV radial-tangential, ``k1 k2 p1 p2``). Cycles renders a *pinhole*
   linear-light EXR with the same focal length and principal point but padded on every side so
   that it covers the whole undistorted field. For each output (distorted) pixel centre
   ``(u+0.5, v+0.5)`` the normalised distorted point ``((u+0.5-cx)/fx, (v+0.5-cy)/fy)`` is
   undistorted by fixed-point iteration (OpenCV's ``undistortPoints`` scheme, iterated to a
   residual below 1e-4 px) and the pinhole render is sampled bilinearly at ``f x + c`` (plus the
   padding). Pixel centres sit at half-integers, the convention of ``render3d.data.undistort``.
2. Exposure and white balance, in linear light: ``rgb * exposure * gain * wb`` with ``gain``
   log-uniform in [0.75, 1.3] and each channel of ``wb`` uniform in [0.94, 1.06]; then clip,
   sRGB transfer, 8 bit, JPEG quality ``--jpeg-quality`` (92, 4:2:0 chroma) like a phone.

With ``--render-scale s < 1`` Cycles renders the padded pinhole at ``s`` times the resolution
(same field of view, principal point still at its centre) and the warp samples it with Keys
cubic interpolation instead of bilinear: the images are softer (like a phone's noise
reduction) but cost ``s^2`` as much.

Denoising: Cycles' OpenImageDenoise is used when this Blender has it. Debian's Blender 3.4
has not, and the compositor's Denoise node needs the same library, so the fallback is our own
albedo-demodulated, edge-aware filter (``denoise_fallback``): the render is divided by its
diffuse+glossy colour pass, the (smooth) shading is filtered with a cross-bilateral filter
guided by normal and albedo passes, and multiplied back, which removes most Monte Carlo noise
and keeps the texture detail that structure-from-motion needs. ``--no-denoise`` turns it off.

Output folder:

- ``images/frame_00000.jpg`` ... (distorted, exposure-jittered JPEG, ``--width`` x ``--height``);
- ``transforms.json`` (nerfstudio): ``camera_model`` ``OPENCV``, ``fl_x fl_y cx cy w h k1 k2 p1
  p2`` and ``frames`` with ``file_path`` and the true camera-to-world ``transform_matrix``
  (OpenGL/Blender camera axes: x right, y up, looking down -z). No split lists: the
  engine's loader then takes every 8th image by name as the test image;
- ``capture_truth.json``: what the engine must not see: per-frame exposure gain and white
  balance, the render settings, per-frame render times, and the padding used.

Self-checks while rendering: the undistortion's residual (must be < 1e-4 px), and for every
frame our ``K``/pose projection of a few scene points against Blender's own camera frame
(``world_to_camera_view`` on the padded camera; must agree within 0.05 px).

``--pinhole-dir DIR`` also writes, for every frame, the pinhole image of the same camera
(``DIR/frame_00000.png``, the central ``w x h`` crop of the padded render, same exposure, lossless)
for checking the distortion round trip. ``--check-render DIR`` additionally renders frame 0
again (different noise seed, full scale) with the smallest pinhole camera that has the output's
``K`` and crops it to ``w x h`` into ``DIR/frame_00000.png`` (an independent render, to check
the padded camera's intrinsics).
"""
from __future__ import annotations

import argparse
import colorsys
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Euler, Matrix, Vector

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_scene  # noqa: E402  (procedural material helpers)

SCENE_SEED = 1234  # the room's random details (books, ...) never depend on --seed
ROOM = (6.0, 5.0, 2.8)  # interior size x, y, z in metres; floor at z=0, centred on x=y=0
TABLE_HEIGHT = 0.75
OBJECT_CENTER = Vector((0.0, 0.0, TABLE_HEIGHT + 0.17))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--width", type=int, default=1080, help="image width in pixels (portrait)")
    parser.add_argument("--height", type=int, default=1920, help="image height in pixels")
    parser.add_argument("--frames", type=int, default=50, help="number of frames of the walk-around")
    parser.add_argument("--seed", type=int, default=0, help="seed of the camera path, jitter and exposure")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    parser.add_argument("--hfov", type=float, default=56.0, help="horizontal field of view in degrees")
    parser.add_argument("--principal-offset", type=float, nargs=2, default=(3.0, -5.0),
                        help="principal point minus image centre, in pixels at 1080 wide (scaled with --width)")
    parser.add_argument("--k1", type=float, default=-0.10)
    parser.add_argument("--k2", type=float, default=0.02)
    parser.add_argument("--p1", type=float, default=1.2e-4)
    parser.add_argument("--p2", type=float, default=-0.8e-4)
    parser.add_argument("--exposure", type=float, default=1.0, help="base linear exposure multiplier")
    parser.add_argument("--gain-range", type=float, nargs=2, default=(0.75, 1.3), help="log-uniform gain range")
    parser.add_argument("--wb-jitter", type=float, default=0.06, help="per-channel white balance +- fraction")
    parser.add_argument("--jpeg-quality", type=int, default=92)
    parser.add_argument("--render-scale", type=float, default=1.0,
                        help="render the pinhole at this fraction of the output resolution and upsample "
                             "(Keys cubic) inside the distortion warp; 0.5 is 4x faster")
    parser.add_argument("--no-denoise", action="store_true", help="no denoiser at all")
    parser.add_argument("--threads", type=int, default=0, help="Cycles threads (0: all cores)")
    parser.add_argument("--pinhole-dir", type=Path, default=None, help="also write the undistorted pinhole PNGs here")
    parser.add_argument("--check-render", type=Path, default=None,
                        help="also render frame 0 with an unpadded pinhole camera into this folder")
    parser.add_argument("--first-frame", type=int, default=0, help="resume: skip frames before this one")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- materials
_principled = make_scene._principled
_plane_coordinates = make_scene._plane_coordinates
_multiply = make_scene._multiply


def _noise(tree, coords, scale: float, detail: float = 4.0, roughness: float = 0.5):
    node = tree.nodes.new("ShaderNodeTexNoise")
    node.inputs["Scale"].default_value = scale
    node.inputs["Detail"].default_value = detail
    node.inputs["Roughness"].default_value = roughness
    if coords is not None:
        tree.links.new(coords, node.inputs["Vector"])
    return node


def _ramp(tree, fac, colors: list[tuple[float, tuple]]):
    """A colour ramp of ``fac`` with stops ``[(position, rgb), ...]``; returns its Color socket."""
    ramp = tree.nodes.new("ShaderNodeValToRGB")
    elements = ramp.color_ramp.elements
    for _ in range(len(colors) - 2):
        elements.new(0.5)
    for element, (position, rgb) in zip(elements, colors):
        element.position = position
        element.color = (*rgb, 1.0)
    tree.links.new(fac, ramp.inputs["Fac"])
    return ramp.outputs["Color"]


def wood_floor_material():
    """Planks (a brick texture with long, narrow bricks of varied tone) with grain and knots."""
    material, tree, bsdf = _principled("floor")
    bsdf.inputs["Roughness"].default_value = 0.45
    bsdf.inputs["Specular"].default_value = 0.35
    coords = _plane_coordinates(tree, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    planks = tree.nodes.new("ShaderNodeTexBrick")
    planks.offset = 0.37
    planks.inputs["Scale"].default_value = 1.0
    planks.inputs["Brick Width"].default_value = 1.1
    planks.inputs["Row Height"].default_value = 0.16
    planks.inputs["Mortar Size"].default_value = 0.004
    planks.inputs["Color1"].default_value = (0.42, 0.22, 0.09, 1.0)
    planks.inputs["Color2"].default_value = (0.62, 0.38, 0.18, 1.0)
    planks.inputs["Mortar"].default_value = (0.06, 0.03, 0.015, 1.0)
    planks.inputs["Bias"].default_value = 0.0
    tree.links.new(coords, planks.inputs["Vector"])
    # Grain: a wave along x, distorted, stretched so it runs along the planks.
    stretch = tree.nodes.new("ShaderNodeMapping")
    stretch.inputs["Scale"].default_value = (0.15, 3.0, 1.0)
    tree.links.new(coords, stretch.inputs["Vector"])
    grain = tree.nodes.new("ShaderNodeTexWave")
    grain.inputs["Scale"].default_value = 6.0
    grain.inputs["Distortion"].default_value = 8.0
    grain.inputs["Detail"].default_value = 4.0
    tree.links.new(stretch.outputs["Vector"], grain.inputs["Vector"])
    grain_color = _ramp(tree, grain.outputs["Fac"], [(0.0, (0.55, 0.5, 0.45)), (1.0, (1.0, 1.0, 1.0))])
    tree.links.new(_multiply(tree, planks.outputs["Color"], grain_color), bsdf.inputs["Base Color"])
    return material


def wall_material(name: str, base: tuple, accent: tuple, pattern: str):
    """Painted wall or wallpaper: ``base`` colour with a subtle ``pattern`` in ``accent``.

    patterns: ``noise`` (mottled paint), ``stripes`` (vertical wallpaper stripes), ``damask``
    (voronoi-cell wallpaper), ``diamonds`` (a rotated checker).
    """
    material, tree, bsdf = _principled(name)
    coords = tree.nodes.new("ShaderNodeTexCoord").outputs["Object"]
    mottle = _noise(tree, coords, 9.0, detail=6.0)
    if pattern == "stripes":
        horizontal = _plane_coordinates(tree, (1.0, 1.0, 0.0), (0.0, 0.0, 1.0))
        wave = tree.nodes.new("ShaderNodeTexWave")
        wave.bands_direction = "X"
        wave.wave_profile = "SAW"
        wave.inputs["Scale"].default_value = 2.2
        tree.links.new(horizontal, wave.inputs["Vector"])
        fac = wave.outputs["Fac"]
    elif pattern == "damask":
        cells = tree.nodes.new("ShaderNodeTexVoronoi")
        cells.feature = "DISTANCE_TO_EDGE"
        cells.inputs["Scale"].default_value = 6.0
        tree.links.new(coords, cells.inputs["Vector"])
        fac = cells.outputs["Distance"]
    elif pattern == "diamonds":
        rotated = _plane_coordinates(tree, (0.7071, 0.7071, 0.7071), (-0.7071, -0.7071, 0.7071))
        checker = tree.nodes.new("ShaderNodeTexChecker")
        checker.inputs["Scale"].default_value = 5.0
        tree.links.new(rotated, checker.inputs["Vector"])
        fac = checker.outputs["Fac"]
    else:
        fac = _noise(tree, coords, 2.5, detail=8.0).outputs["Fac"]
    pattern_color = _ramp(tree, fac, [(0.0, accent), (0.6, base), (1.0, base)])
    shade = _ramp(tree, mottle.outputs["Fac"], [(0.3, (0.88, 0.88, 0.88)), (0.7, (1.0, 1.0, 1.0))])
    tree.links.new(_multiply(tree, pattern_color, shade), bsdf.inputs["Base Color"])
    return material


def flat_noise_material(name: str, dark: tuple, light: tuple, scale: float, roughness: float = 0.7,
                        detail: float = 6.0):
    """A colour between ``dark`` and ``light`` driven by fractal noise (fabric, cardboard, plaster)."""
    material, tree, bsdf = _principled(name)
    bsdf.inputs["Roughness"].default_value = roughness
    coords = tree.nodes.new("ShaderNodeTexCoord").outputs["Object"]
    noise = _noise(tree, coords, scale, detail=detail, roughness=0.6)
    tree.links.new(_ramp(tree, noise.outputs["Fac"], [(0.25, dark), (0.75, light)]), bsdf.inputs["Base Color"])
    return material


def wood_material(name: str, dark: tuple, light: tuple, scale: float = 3.0):
    """Furniture wood: distorted rings along the object's x axis."""
    material, tree, bsdf = _principled(name)
    bsdf.inputs["Roughness"].default_value = 0.4
    bsdf.inputs["Specular"].default_value = 0.4
    coords = tree.nodes.new("ShaderNodeTexCoord").outputs["Object"]
    stretch = tree.nodes.new("ShaderNodeMapping")
    stretch.inputs["Scale"].default_value = (0.2, 1.0, 1.0)
    tree.links.new(coords, stretch.inputs["Vector"])
    rings = tree.nodes.new("ShaderNodeTexWave")
    rings.wave_type = "RINGS"
    rings.inputs["Scale"].default_value = scale
    rings.inputs["Distortion"].default_value = 6.0
    rings.inputs["Detail"].default_value = 3.0
    tree.links.new(stretch.outputs["Vector"], rings.inputs["Vector"])
    tree.links.new(_ramp(tree, rings.outputs["Fac"], [(0.0, dark), (1.0, light)]), bsdf.inputs["Base Color"])
    return material


def rug_material():
    """A patterned rug: concentric distorted rings and a checker border-like grid in red, cream, navy."""
    material, tree, bsdf = _principled("rug")
    bsdf.inputs["Roughness"].default_value = 0.95
    bsdf.inputs["Specular"].default_value = 0.1
    coords = tree.nodes.new("ShaderNodeTexCoord").outputs["Object"]
    rings = tree.nodes.new("ShaderNodeTexWave")
    rings.wave_type = "RINGS"
    rings.rings_direction = "Z"
    rings.inputs["Scale"].default_value = 3.0
    rings.inputs["Distortion"].default_value = 3.0
    tree.links.new(coords, rings.inputs["Vector"])
    color = _ramp(tree, rings.outputs["Fac"], [(0.0, (0.5, 0.05, 0.04)), (0.45, (0.85, 0.75, 0.55)),
                                              (0.55, (0.05, 0.08, 0.25)), (1.0, (0.5, 0.05, 0.04))])
    checker = tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 14.0
    checker.inputs["Color1"].default_value = (1.0, 1.0, 1.0, 1.0)
    checker.inputs["Color2"].default_value = (0.75, 0.7, 0.65, 1.0)
    tree.links.new(coords, checker.inputs["Vector"])
    tree.links.new(_multiply(tree, color, checker.outputs["Color"]), bsdf.inputs["Base Color"])
    return material


def book_material():
    """Books: each object's colour (``obj.color``) with two pale bands near the top of the spine."""
    material, tree, bsdf = _principled("book")
    info = tree.nodes.new("ShaderNodeObjectInfo")
    coords = tree.nodes.new("ShaderNodeTexCoord").outputs["Generated"]
    separate = tree.nodes.new("ShaderNodeSeparateXYZ")
    tree.links.new(coords, separate.inputs["Vector"])
    bands = _ramp(tree, separate.outputs["Z"], [(0.0, (1, 1, 1)), (0.72, (1, 1, 1)), (0.74, (0.9, 0.8, 0.4)),
                                                (0.78, (0.9, 0.8, 0.4)), (0.8, (1, 1, 1)), (0.84, (1, 1, 1)),
                                                (0.86, (0.9, 0.8, 0.4)), (0.88, (1, 1, 1))])
    tinted = tree.nodes.new("ShaderNodeMixRGB")
    tinted.blend_type = "MIX"
    tinted.inputs["Color2"].default_value = (0.9, 0.8, 0.45, 1.0)
    band_mask = tree.nodes.new("ShaderNodeRGBToBW")
    tree.links.new(bands, band_mask.inputs["Color"])
    invert = tree.nodes.new("ShaderNodeMath")
    invert.operation = "SUBTRACT"
    invert.inputs[0].default_value = 1.0
    tree.links.new(band_mask.outputs["Val"], invert.inputs[1])
    boost = tree.nodes.new("ShaderNodeMath")
    boost.operation = "MULTIPLY"
    boost.inputs[1].default_value = 8.0
    boost.use_clamp = True
    tree.links.new(invert.outputs["Value"], boost.inputs[0])
    tree.links.new(boost.outputs["Value"], tinted.inputs["Fac"])
    tree.links.new(info.outputs["Color"], tinted.inputs["Color1"])
    tree.links.new(tinted.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def emission_material(name: str, color: tuple, strength: float):
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (*color, 1.0)
    emission.inputs["Strength"].default_value = strength
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def plain_material(name: str, color: tuple, roughness: float = 0.6, metallic: float = 0.0):
    material, _, bsdf = _principled(name)
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    return material


# ---------------------------------------------------------------------------- geometry helpers
def _link(obj, material, smooth: bool = False):
    obj.data.materials.append(material)
    if smooth:
        for polygon in obj.data.polygons:
            polygon.use_smooth = True
    return obj


def box(name: str, center: tuple, size: tuple, material, bevel: float = 0.0, rotation_z: float = 0.0):
    """An axis-aligned (then rotated about z) box with its scale applied, so object coordinates are metres."""
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=center, rotation=(0.0, 0.0, rotation_z))
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = size
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    if bevel > 0.0:
        modifier = obj.modifiers.new("bevel", "BEVEL")
        modifier.width = bevel
        modifier.segments = 2
    return _link(obj, material)


def cylinder(name: str, center: tuple, radius: float, depth: float, material, vertices: int = 32,
             rotation: tuple = (0.0, 0.0, 0.0)):
    bpy.ops.mesh.primitive_cylinder_add(vertices=vertices, radius=radius, depth=depth, location=center,
                                        rotation=rotation)
    obj = bpy.context.active_object
    obj.name = name
    return _link(obj, material, smooth=True)


def cut_hole(target, center: tuple, size: tuple) -> None:
    """Boolean-subtract a box (invisible in renders) from ``target``."""
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=center)
    cutter = bpy.context.active_object
    cutter.name = f"{target.name}_cutter"
    cutter.scale = size
    cutter.hide_render = True
    cutter.display_type = "WIRE"
    modifier = target.modifiers.new("hole", "BOOLEAN")
    modifier.operation = "DIFFERENCE"
    modifier.solver = "EXACT"
    modifier.object = cutter


# ---------------------------------------------------------------------------- the room
WINDOWS = (  # (centre x, width, sill z, height) in the +y wall
    (-1.4, 1.2, 0.85, 1.35),
    (1.3, 1.2, 0.85, 1.35),
)


def build_shell() -> None:
    """Floor, ceiling, four walls (two windows in the +y wall), window frames, skirting."""
    sx, sy, sz = ROOM
    t = 0.15
    box("floor", (0.0, 0.0, -t / 2), (sx + 2 * t, sy + 2 * t, t), wood_floor_material())
    box("ceiling", (0.0, 0.0, sz + t / 2), (sx + 2 * t, sy + 2 * t, t),
        flat_noise_material("ceiling", (0.82, 0.81, 0.78), (0.9, 0.89, 0.86), 4.0))
    walls = {
        "wall_north": ((0.0, sy / 2 + t / 2, sz / 2), (sx + 2 * t, t, sz),
                       wall_material("wall_north", (0.78, 0.74, 0.62), (0.6, 0.52, 0.38), "stripes")),
        "wall_south": ((0.0, -sy / 2 - t / 2, sz / 2), (sx + 2 * t, t, sz),
                       wall_material("wall_south", (0.55, 0.65, 0.6), (0.35, 0.45, 0.42), "damask")),
        "wall_east": ((sx / 2 + t / 2, 0.0, sz / 2), (t, sy, sz),
                      wall_material("wall_east", (0.8, 0.78, 0.74), (0.62, 0.58, 0.52), "noise")),
        "wall_west": ((-sx / 2 - t / 2, 0.0, sz / 2), (t, sy, sz),
                      wall_material("wall_west", (0.72, 0.55, 0.45), (0.58, 0.4, 0.32), "diamonds")),
    }
    objects = {name: box(name, center, size, material) for name, (center, size, material) in walls.items()}
    frame_material = plain_material("window_frame", (0.92, 0.92, 0.9), roughness=0.4)
    for index, (x, width, sill, height) in enumerate(WINDOWS):
        cut_hole(objects["wall_north"], (x, sy / 2 + t / 2, sill + height / 2), (width, 4 * t, height))
        y = sy / 2 + t / 2
        for side in (-1, 1):  # jambs, head and sill
            box(f"window{index}_jamb{side}", (x + side * (width / 2 - 0.025), y, sill + height / 2),
                (0.05, t + 0.02, height), frame_material)
        box(f"window{index}_head", (x, y, sill + height - 0.025), (width, t + 0.02, 0.05), frame_material)
        box(f"window{index}_sill", (x, y - 0.05, sill + 0.02), (width + 0.1, t + 0.12, 0.04), frame_material)
        box(f"window{index}_mullion", (x, y + 0.03, sill + height / 2), (0.035, 0.04, height), frame_material)
        box(f"window{index}_transom", (x, y + 0.03, sill + 0.62 * height), (width, 0.04, 0.035), frame_material)
        add_portal(f"window{index}_portal", (x, sy / 2 + t + 0.01, sill + height / 2), (width, height))
    skirting = plain_material("skirting", (0.9, 0.9, 0.88), roughness=0.5)
    box("skirting_n", (0.0, sy / 2 - 0.01, 0.05), (sx, 0.02, 0.1), skirting)
    box("skirting_s", (0.0, -sy / 2 + 0.01, 0.05), (sx, 0.02, 0.1), skirting)
    box("skirting_e", (sx / 2 - 0.01, 0.0, 0.05), (0.02, sy, 0.1), skirting)
    box("skirting_w", (-sx / 2 + 0.01, 0.0, 0.05), (0.02, sy, 0.1), skirting)


def add_portal(name: str, center: tuple, size: tuple) -> None:
    """A Cycles light portal filling a window (guides sky sampling; invisible itself)."""
    light = bpy.data.lights.new(name, "AREA")
    light.shape = "RECTANGLE"
    light.size, light.size_y = size
    light.cycles.is_portal = True
    obj = bpy.data.objects.new(name, light)
    obj.location = center
    obj.rotation_euler = (math.radians(-90.0), 0.0, 0.0)  # emits along -z local -> towards -y (into the room)
    bpy.context.scene.collection.objects.link(obj)


def build_door() -> None:
    """A panelled door with frame and handle in the west (-x) wall."""
    sx = ROOM[0]
    x = -sx / 2
    door = wood_material("door", (0.35, 0.2, 0.1), (0.5, 0.3, 0.15), scale=2.0)
    frame = plain_material("door_frame", (0.9, 0.9, 0.88), roughness=0.45)
    box("door", (x + 0.025, 1.3, 1.0), (0.04, 0.86, 2.0), door, bevel=0.005)
    for index, z in enumerate((0.55, 1.45)):  # raised panels
        box(f"door_panel{index}", (x + 0.05, 1.3, z), (0.015, 0.6, 0.7), door, bevel=0.01)
    box("door_frame_l", (x + 0.03, 0.84, 1.03), (0.06, 0.07, 2.06), frame)
    box("door_frame_r", (x + 0.03, 1.76, 1.03), (0.06, 0.07, 2.06), frame)
    box("door_frame_top", (x + 0.03, 1.3, 2.06), (0.06, 0.99, 0.07), frame)
    metal = plain_material("brass", (0.8, 0.6, 0.25), roughness=0.3, metallic=1.0)
    cylinder("door_handle", (x + 0.1, 0.98, 1.0), 0.012, 0.12, metal, rotation=(0.0, math.radians(90), 0.0))
    cylinder("door_rose", (x + 0.05, 1.0, 1.0), 0.03, 0.02, metal, rotation=(0.0, math.radians(90), 0.0))


def build_table() -> None:
    top = wood_material("table", (0.25, 0.13, 0.06), (0.45, 0.27, 0.13), scale=2.5)
    box("table_top", (0.0, 0.0, TABLE_HEIGHT - 0.02), (1.2, 0.8, 0.04), top, bevel=0.008)
    for index, (x, y) in enumerate(((0.52, 0.32), (-0.52, 0.32), (0.52, -0.32), (-0.52, -0.32))):
        box(f"table_leg{index}", (x, y, (TABLE_HEIGHT - 0.04) / 2), (0.05, 0.05, TABLE_HEIGHT - 0.04), top)
    box("rug", (0.0, 0.0, 0.006), (2.6, 1.7, 0.012), rug_material(), bevel=0.004)


def build_object_of_interest() -> None:
    """The object on the table: a tall textured vase with a few small things around it (~40 cm)."""
    z0 = TABLE_HEIGHT
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=0.1, location=(0.0, 0.0, z0 + 0.14))
    vase = bpy.context.active_object
    vase.name = "vase"
    vase.scale = (1.0, 1.0, 1.4)
    bpy.ops.object.transform_apply(scale=True)
    _link(vase, make_scene.magic_material(), smooth=True)
    cylinder("vase_neck", (0.0, 0.0, z0 + 0.3), 0.045, 0.1, make_scene.stripes_material(
        40.0, (0.05, 0.1, 0.35), (0.95, 0.9, 0.8), glossy=True), vertices=40)
    bpy.ops.mesh.primitive_torus_add(major_radius=0.05, minor_radius=0.012, location=(0.0, 0.0, z0 + 0.35))
    _link(bpy.context.active_object, plain_material("vase_lip", (0.05, 0.1, 0.35), roughness=0.3), smooth=True)
    bpy.context.active_object.name = "vase_lip"
    cylinder("mug", (0.17, -0.07, z0 + 0.05), 0.045, 0.1, make_scene.stripes_material(
        25.0, (0.8, 0.15, 0.1), (0.95, 0.95, 0.9)), vertices=40)
    bpy.ops.mesh.primitive_torus_add(major_radius=0.03, minor_radius=0.008, location=(0.215, -0.07, z0 + 0.05),
                                     rotation=(math.radians(90), 0.0, 0.0))
    _link(bpy.context.active_object, plain_material("mug_handle", (0.8, 0.15, 0.1), roughness=0.35), smooth=True)
    box("book_on_table", (-0.16, 0.06, z0 + 0.02), (0.2, 0.14, 0.04), make_scene.brick_material(),
        rotation_z=math.radians(20))
    bpy.ops.mesh.primitive_uv_sphere_add(segments=32, ring_count=16, radius=0.05,
                                         location=(0.08, 0.15, z0 + 0.05))
    bpy.context.active_object.name = "ball"
    _link(bpy.context.active_object, make_scene.voronoi_material(), smooth=True)
    box("small_box", (-0.06, -0.15, z0 + 0.035), (0.07, 0.07, 0.07), make_scene.checker_wave_material(),
        rotation_z=math.radians(35))


def build_sofa() -> None:
    """A three-seat sofa against the south (-y) wall, with cushions and a side table."""
    sy = ROOM[1]
    fabric = flat_noise_material("sofa", (0.1, 0.22, 0.28), (0.2, 0.36, 0.42), 30.0, roughness=0.9)
    cushion = flat_noise_material("cushion", (0.75, 0.45, 0.1), (0.9, 0.65, 0.25), 12.0, roughness=0.9)
    y = -sy / 2 + 0.45
    box("sofa_base", (0.3, y, 0.22), (2.0, 0.85, 0.3), fabric, bevel=0.03)
    box("sofa_back", (0.3, -sy / 2 + 0.12, 0.6), (2.0, 0.22, 0.55), fabric, bevel=0.05)
    for side in (-1, 1):
        box(f"sofa_arm{side}", (0.3 + side * 1.08, y, 0.45), (0.18, 0.85, 0.5), fabric, bevel=0.04)
    for index, x in enumerate((-0.35, 0.3, 0.95)):
        box(f"sofa_seat{index}", (x, y + 0.05, 0.43), (0.63, 0.72, 0.14), fabric, bevel=0.04)
    for index, x in enumerate((-0.5, 1.1)):
        box(f"sofa_pillow{index}", (x, -sy / 2 + 0.35, 0.68), (0.42, 0.14, 0.4), cushion, bevel=0.05,
            rotation_z=math.radians(8 * (index * 2 - 1)))
    side = wood_material("side_table", (0.2, 0.1, 0.05), (0.35, 0.2, 0.1))
    box("side_table", (-1.35, -sy / 2 + 0.3, 0.27), (0.45, 0.45, 0.54), side, bevel=0.01)
    bpy.ops.mesh.primitive_cone_add(vertices=32, radius1=0.08, radius2=0.05, depth=0.16,
                                    location=(-1.35, -sy / 2 + 0.3, 0.62))
    _link(bpy.context.active_object, flat_noise_material("pot", (0.5, 0.2, 0.1), (0.7, 0.35, 0.2), 20.0), True)
    leaves = flat_noise_material("leaves", (0.05, 0.25, 0.05), (0.2, 0.5, 0.1), 15.0)
    rng = random.Random(SCENE_SEED)
    for index in range(7):
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, radius=rng.uniform(0.06, 0.1), location=(
            -1.35 + rng.uniform(-0.08, 0.08), -sy / 2 + 0.3 + rng.uniform(-0.08, 0.08), 0.78 + rng.uniform(0, 0.15)))
        _link(bpy.context.active_object, leaves, smooth=True)


def build_shelf() -> None:
    """A book shelf against the east (+x) wall, books of random colours and sizes on four shelves."""
    sx = ROOM[0]
    rng = random.Random(SCENE_SEED + 1)
    wood = wood_material("shelf", (0.55, 0.42, 0.28), (0.75, 0.6, 0.42), scale=4.0)
    x = sx / 2 - 0.17
    y0, width, height, depth = -0.6, 1.3, 1.9, 0.32
    for side in (-1, 1):
        box(f"shelf_side{side}", (x, y0 + side * width / 2, height / 2), (depth, 0.025, height), wood)
    box("shelf_back", (sx / 2 - 0.005, y0, height / 2), (0.01, width, height), wood)
    levels = (0.05, 0.5, 0.95, 1.4, 1.88)
    for index, z in enumerate(levels):
        box(f"shelf_board{index}", (x, y0, z), (depth, width, 0.025), wood)
    books = book_material()
    for level, (z, top) in enumerate(zip(levels[:-1], levels[1:])):
        y = y0 - width / 2 + 0.03
        while True:
            thickness = rng.uniform(0.02, 0.055)
            tall = rng.uniform(0.2, min(0.36, top - z - 0.04))
            if rng.random() < 0.12:  # a gap
                y += rng.uniform(0.04, 0.12)
                continue
            if y + thickness > y0 + width / 2 - 0.03:
                break
            obj = box(f"book_{level}_{y:.3f}", (x + 0.02, y + thickness / 2, z + 0.0125 + tall / 2),
                      (rng.uniform(0.17, 0.24), thickness, tall), books)
            hue = rng.random()
            obj.color = (*colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 0.85), rng.uniform(0.25, 0.85)), 1.0)
            y += thickness + 0.002
    ceramic = plain_material("shelf_vase", (0.9, 0.9, 0.85), roughness=0.25)
    cylinder("shelf_jar", (x, y0 + 0.45, levels[4] + 0.09), 0.05, 0.16, ceramic)


def build_lamp_and_boxes() -> None:
    """A floor lamp in the north-east corner, moving boxes by the door, pictures on the walls."""
    sx, sy, _ = ROOM
    metal = plain_material("lamp_metal", (0.05, 0.05, 0.05), roughness=0.35, metallic=1.0)
    lx, ly = sx / 2 - 0.45, sy / 2 - 0.45
    cylinder("lamp_base", (lx, ly, 0.015), 0.16, 0.03, metal)
    cylinder("lamp_pole", (lx, ly, 0.8), 0.012, 1.55, metal, vertices=16)
    bpy.ops.mesh.primitive_cone_add(vertices=48, radius1=0.22, radius2=0.13, depth=0.28, end_fill_type="NOTHING",
                                    location=(lx, ly, 1.55))
    shade = bpy.context.active_object
    shade.name = "lamp_shade"
    _link(shade, flat_noise_material("lamp_shade", (0.85, 0.78, 0.6), (0.95, 0.9, 0.75), 40.0), smooth=True)
    solid = shade.modifiers.new("solid", "SOLIDIFY")
    solid.thickness = 0.005
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.04, location=(lx, ly, 1.5))
    _link(bpy.context.active_object, emission_material("bulb", (1.0, 0.8, 0.55), 30.0), smooth=True)
    bulb = bpy.data.lights.new("lamp_light", "POINT")
    bulb.energy = 40.0
    bulb.color = (1.0, 0.78, 0.5)
    bulb.shadow_soft_size = 0.05
    obj = bpy.data.objects.new("lamp_light", bulb)
    obj.location = (lx, ly, 1.5)
    bpy.context.scene.collection.objects.link(obj)

    cardboard = flat_noise_material("cardboard", (0.45, 0.3, 0.15), (0.62, 0.45, 0.25), 25.0, detail=8.0)
    tape = plain_material("tape", (0.75, 0.65, 0.45), roughness=0.3)
    for index, (x, y, z, size, angle) in enumerate((
        (-sx / 2 + 0.45, -1.5, 0.25, (0.5, 0.6, 0.5), 5.0),
        (-sx / 2 + 0.5, -1.45, 0.7, (0.4, 0.42, 0.4), -12.0),
        (-sx / 2 + 1.05, -1.95, 0.18, (0.36, 0.36, 0.36), 20.0),
    )):
        box(f"box{index}", (x, y, z), size, cardboard, bevel=0.005, rotation_z=math.radians(angle))
        box(f"box{index}_tape", (x, y, z + size[2] / 2 + 0.001), (0.06, size[1] + 0.004, 0.003), tape,
            rotation_z=math.radians(angle))

    pictures = (  # (centre, size, axis the picture faces along)
        ((0.3, -sy / 2 + 0.02, 1.65), (1.1, 0.02, 0.7), make_scene.magic_material()),
        ((-sx / 2 + 0.02, -0.7, 1.55), (0.02, 0.6, 0.8), make_scene.voronoi_material()),
        ((sx / 2 - 0.02, 1.4, 1.5), (0.02, 0.7, 0.5), make_scene.brick_material()),
        ((0.05, sy / 2 - 0.02, 1.9), (0.45, 0.02, 0.45), make_scene.checker_wave_material()),
    )
    frame = plain_material("picture_frame", (0.08, 0.06, 0.05), roughness=0.5)
    for index, (center, size, material) in enumerate(pictures):
        outer = tuple(s + 0.08 if s > 0.05 else s for s in size)
        box(f"picture{index}_frame", center, outer, frame)
        inward = tuple(-0.012 if c > 0 and s <= 0.05 else (0.012 if s <= 0.05 else 0.0)
                       for c, s in zip(center, size))
        box(f"picture{index}", tuple(c + d for c, d in zip(center, inward)), size, material)


# ---------------------------------------------------------------------------- lights, world, render
def setup_world_and_lights() -> None:
    """Sky gradient (ground below the horizon) and a sun through the windows, a ceiling area light."""
    world = bpy.data.worlds.new("sky")
    bpy.context.scene.world = world
    world.use_nodes = True
    tree = world.node_tree
    direction = tree.nodes.new("ShaderNodeTexCoord").outputs["Generated"]
    separate = tree.nodes.new("ShaderNodeSeparateXYZ")
    tree.links.new(direction, separate.inputs["Vector"])
    remap = tree.nodes.new("ShaderNodeMapRange")
    remap.inputs["From Min"].default_value = -1.0
    remap.inputs["From Max"].default_value = 1.0
    tree.links.new(separate.outputs["Z"], remap.inputs["Value"])
    sky = _ramp(tree, remap.outputs["Result"], [(0.0, (0.12, 0.14, 0.08)), (0.48, (0.25, 0.3, 0.15)),
                                                (0.5, (0.85, 0.9, 0.95)), (0.62, (0.45, 0.62, 0.9)),
                                                (1.0, (0.15, 0.3, 0.75))])
    background = tree.nodes["Background"]
    background.inputs["Strength"].default_value = 2.5
    tree.links.new(sky, background.inputs["Color"])

    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy = 4.0
    sun.angle = math.radians(1.5)
    sun.color = (1.0, 0.93, 0.82)
    obj = bpy.data.objects.new("sun", sun)
    travel = Vector((0.35, -0.8, -0.55)).normalized()  # through the +y windows, down onto the floor
    obj.rotation_euler = travel.to_track_quat("-Z", "Y").to_euler()
    bpy.context.scene.collection.objects.link(obj)

    ceiling = bpy.data.lights.new("ceiling_light", "AREA")
    ceiling.shape = "SQUARE"
    ceiling.size = 0.8
    ceiling.energy = 220.0
    ceiling.color = (1.0, 0.95, 0.88)
    obj = bpy.data.objects.new("ceiling_light", ceiling)
    obj.location = (0.0, 0.0, ROOM[2] - 0.02)
    bpy.context.scene.collection.objects.link(obj)
    box("ceiling_fixture", (0.0, 0.0, ROOM[2] - 0.01), (0.84, 0.84, 0.015),
        emission_material("fixture", (1.0, 0.97, 0.9), 6.0))


def oidn_available() -> bool:
    try:
        import _cycles
        return bool(getattr(_cycles, "with_openimagedenoise", False))
    except ImportError:
        return False


def setup_render(args: argparse.Namespace, use_oidn: bool) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = args.samples
    cycles.use_adaptive_sampling = True
    cycles.adaptive_threshold = 0.03
    cycles.max_bounces = 4
    cycles.diffuse_bounces = 2
    cycles.glossy_bounces = 2
    cycles.transmission_bounces = 2
    cycles.transparent_max_bounces = 4
    cycles.caustics_reflective = False
    cycles.caustics_refractive = False
    cycles.sample_clamp_indirect = 2.0
    cycles.blur_glossy = 1.0
    cycles.use_denoising = use_oidn
    if use_oidn:
        cycles.denoiser = "OPENIMAGEDENOISE"
    if args.threads:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = args.threads
    scene.render.resolution_percentage = 100
    scene.render.use_sequencer = False
    scene.render.film_transparent = False
    scene.render.filter_size = 1.2
    scene.view_settings.view_transform = "Standard"
    layer = scene.view_layers[0]
    layer.use_pass_normal = True
    layer.use_pass_diffuse_color = True
    layer.use_pass_glossy_color = True


def make_camera() -> bpy.types.Object:
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.clip_start = 0.02
    data.clip_end = 50.0
    camera = bpy.data.objects.new("camera", data)
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    return camera


def set_pinhole(camera, fx: float, width: int, height: int) -> None:
    """Pinhole of focal length ``fx`` pixels, principal point at the image centre, ``width x height``."""
    scene = bpy.context.scene
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    camera.data.sensor_fit = "HORIZONTAL"
    camera.data.angle_x = 2.0 * math.atan(0.5 * width / fx)
    camera.data.shift_x = camera.data.shift_y = 0.0


# ---------------------------------------------------------------------------- cameras
def look_at(eye: Vector, target: Vector) -> Matrix:
    return make_scene.look_at(eye, target)


def walk_poses(args: argparse.Namespace) -> list[Matrix]:
    """Camera-to-world poses (OpenGL axes) of a handheld walk once around the table."""
    rng = np.random.default_rng(args.seed)
    count = args.frames
    start = rng.uniform(0.0, 2.0 * math.pi)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    phase = rng.uniform(0.0, 2.0 * math.pi, size=4)
    poses = []
    for index in range(count):
        s = index / count  # one full loop
        angle = start + direction * 2.0 * math.pi * s
        wobble = 1.0 + 0.05 * math.sin(2.0 * math.pi * 2.0 * s + phase[0])
        x = 1.75 * wobble * math.cos(angle)
        y = 1.35 * wobble * math.sin(angle)
        z = (1.5 + 0.17 * math.sin(2.0 * math.pi * 1.5 * s + phase[1])
             + 0.03 * math.sin(2.0 * math.pi * 5 * s + phase[2]))
        eye = Vector((x, y, z)) + Vector(np.clip(rng.normal(0.0, 0.02, 3), -0.05, 0.05).tolist())
        target = OBJECT_CENTER + Vector((0.04 * math.sin(2.0 * math.pi * 3 * s + phase[3]),
                                         0.04 * math.cos(2.0 * math.pi * 2 * s + phase[3]), 0.0))
        pose = look_at(eye, target)
        yaw, pitch = np.clip(rng.normal(0.0, 1.2, 2), -3.0, 3.0)
        roll = float(np.clip(rng.normal(0.0, 1.5), -3.0, 3.0))
        jitter = Euler((math.radians(pitch), math.radians(yaw), math.radians(roll)), "XYZ").to_matrix().to_4x4()
        pose = pose @ jitter
        check_inside_room(pose.to_translation())
        poses.append(pose)
    return poses


def check_inside_room(eye: Vector) -> None:
    sx, sy, sz = ROOM
    if not (abs(eye.x) < sx / 2 - 0.3 and abs(eye.y) < sy / 2 - 0.3 and 0.3 < eye.z < sz - 0.3):
        raise RuntimeError(f"camera at {tuple(eye)} is not inside the room")


# ---------------------------------------------------------------------------- lens distortion
def distort(x: np.ndarray, y: np.ndarray, k1: float, k2: float, p1: float, p2: float):
    """OpenCV radial-tangential model on normalised coordinates (k3 = 0)."""
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    return (x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
            y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y)


def undistort(xd: np.ndarray, yd: np.ndarray, k1: float, k2: float, p1: float, p2: float,
              iterations: int = 100, tolerance: float = 1e-9):
    """Invert :func:`distort` by fixed-point iteration (OpenCV's undistortPoints scheme)."""
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + k1 * r2 + k2 * r2 * r2
        dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        x_new, y_new = (xd - dx) / radial, (yd - dy) / radial
        step = max(float(np.abs(x_new - x).max()), float(np.abs(y_new - y).max()))
        x, y = x_new, y_new
        if step < tolerance:
            break
    return x, y


class Lens:
    """Intrinsics, distortion and the padded pinhole render that covers the distorted frame.

    The pinhole render is ``(w + pad_left + pad_right) x (h + pad_top + pad_bottom)`` with the
    principal point at its exact centre, so Blender needs no lens shift: the pads differ by twice
    the principal point's offset from the output image's centre.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.w, self.h = args.width, args.height
        self.fx = self.fy = 0.5 * self.w / math.tan(math.radians(args.hfov) / 2.0)
        scale = self.w / 1080.0
        # Offsets in whole pixels so that the padded render's centre is the principal point.
        off_x, off_y = (round(v * scale) for v in args.principal_offset)
        self.cx, self.cy = self.w / 2.0 + off_x, self.h / 2.0 + off_y
        self.coeffs = (args.k1, args.k2, args.p1, args.p2)
        v, u = np.meshgrid(np.arange(self.h) + 0.5, np.arange(self.w) + 0.5, indexing="ij")
        xd, yd = (u - self.cx) / self.fx, (v - self.cy) / self.fy
        x, y = undistort(xd, yd, *self.coeffs)
        rx, ry = distort(x, y, *self.coeffs)
        self.residual_px = float(max(np.abs(rx - xd).max(), np.abs(ry - yd).max()) * self.fx)
        if self.residual_px > 1e-4:
            raise RuntimeError(f"undistortion did not converge: residual {self.residual_px:.2e} px")
        self.src_u, self.src_v = self.fx * x + self.cx, self.fy * y + self.cy  # pinhole pixel coordinates
        # Pads so bilinear sampling (index = coordinate - 0.5, and the next pixel) stays inside.
        need_left = math.ceil(max(0.0, 0.5 - self.src_u.min())) + 3
        need_right = math.ceil(max(0.0, self.src_u.max() - self.w + 0.5)) + 3
        need_top = math.ceil(max(0.0, 0.5 - self.src_v.min())) + 3
        need_bottom = math.ceil(max(0.0, self.src_v.max() - self.h + 0.5)) + 3
        # Centre the principal point: pad_right - pad_left = 2 cx - w.
        dx, dy = round(2 * self.cx - self.w), round(2 * self.cy - self.h)
        self.pad_left = max(need_left, need_right - dx)
        self.pad_right = self.pad_left + dx
        self.pad_top = max(need_top, need_bottom - dy)
        self.pad_bottom = self.pad_top + dy
        self.render_w = self.w + self.pad_left + self.pad_right
        self.render_h = self.h + self.pad_top + self.pad_bottom
        assert abs(self.render_w / 2.0 - (self.cx + self.pad_left)) < 1e-9
        assert abs(self.render_h / 2.0 - (self.cy + self.pad_top)) < 1e-9

    def render_size(self, scale: float) -> tuple[int, int, float]:
        """Size and focal length (pixels) of the padded pinhole rendered at ``scale`` of full resolution."""
        width = max(2, round(self.render_w * scale))
        height = max(2, round(self.render_h * scale))
        return width, height, self.fx * width / self.render_w

    def _sample(self, image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Sample the padded render (at any scale) at full-resolution pinhole coordinates ``(u, v)``.

        Bilinear at full scale; Keys cubic when the render is smaller (an upsampling).
        """
        height, width = image.shape[:2]
        k = width / self.render_w  # same in x and y: the principal point is the centre of both
        fu = (u + self.pad_left - self.render_w / 2.0) * k + width / 2.0 - 0.5
        fv = (v + self.pad_top - self.render_h / 2.0) * k + height / 2.0 - 0.5
        u0, v0 = np.floor(fu).astype(np.int64), np.floor(fv).astype(np.int64)
        a, b = (fu - u0)[..., None].astype(np.float32), (fv - v0)[..., None].astype(np.float32)
        if width == self.render_w:
            top = image[v0, u0] * (1 - a) + image[v0, u0 + 1] * a
            bottom = image[v0 + 1, u0] * (1 - a) + image[v0 + 1, u0 + 1] * a
            return (top * (1 - b) + bottom * b).astype(np.float32)
        result = np.zeros(u.shape + image.shape[2:], dtype=np.float32)
        wu, wv = _keys_weights(a), _keys_weights(b)
        for j in range(4):
            rows = np.clip(v0 + j - 1, 0, height - 1)
            for i in range(4):
                cols = np.clip(u0 + i - 1, 0, width - 1)
                result += (wv[j] * wu[i]) * image[rows, cols]
        return result

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Distort a padded pinhole render ``[H', W', C]`` into the ``[h, w, C]`` phone image."""
        return self._sample(image, self.src_u, self.src_v)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The undistorted pinhole ``h x w`` image of the output camera (same K) from the padded render."""
        v, u = np.meshgrid(np.arange(self.h) + 0.5, np.arange(self.w) + 0.5, indexing="ij")
        return self._sample(image, u, v)

    def json(self) -> dict:
        k1, k2, p1, p2 = self.coeffs
        return {"camera_model": "OPENCV", "fl_x": self.fx, "fl_y": self.fy, "cx": self.cx, "cy": self.cy,
                "w": self.w, "h": self.h, "k1": k1, "k2": k2, "p1": p1, "p2": p2}


def _keys_weights(t: np.ndarray, a: float = -0.5) -> list[np.ndarray]:
    """Keys cubic convolution weights of the taps at offsets -1, 0, 1, 2 for fraction ``t``."""
    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return [far(1.0 + t), near(t), near(1.0 - t), far(2.0 - t)]


# ---------------------------------------------------------------------------- images
PASSES = ("Image", "Normal", "DiffCol", "GlossCol")


def setup_pass_output(folder: Path, passes: tuple[str, ...]) -> None:
    """Compositor: write the render's ``passes`` as single-layer float EXRs ``folder/<pass>_####.exr``."""
    scene = bpy.context.scene
    scene.render.use_compositing = True
    scene.use_nodes = True
    tree = scene.node_tree
    tree.nodes.clear()
    layers = tree.nodes.new("CompositorNodeRLayers")
    output = tree.nodes.new("CompositorNodeOutputFile")
    output.base_path = str(folder)
    output.format.file_format = "OPEN_EXR"
    output.format.color_depth = "32"
    output.format.exr_codec = "ZIP"
    output.file_slots.clear()
    for name in passes:
        output.file_slots.new(f"{name}_")
        tree.links.new(layers.outputs[name], output.inputs[f"{name}_"])


def render_passes(folder: Path, passes: tuple[str, ...], frame: int) -> dict[str, np.ndarray]:
    """Render the current camera; returns each pass as ``[H,W,3]`` float32 linear, top row first."""
    scene = bpy.context.scene
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=False)
    result = {}
    for name in passes:
        path = folder / f"{name}_{frame:04d}.exr"
        result[name] = read_exr(path)
        path.unlink()
    return result


def read_exr(path: Path) -> np.ndarray:
    """An EXR file as ``[H,W,3]`` float32 (raw values, no colour management), top row first."""
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * image.channels, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        return pixels.reshape(height, width, image.channels)[::-1, :, :3].copy()
    finally:
        bpy.data.images.remove(image)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055)


def denoise_fallback(color: np.ndarray, albedo: np.ndarray, normal: np.ndarray, radius: int = 3,
                     sigma_normal: float = 0.15, sigma_albedo: float = 0.06, sigma_shading: float = 0.5) -> np.ndarray:
    """Albedo-demodulated cross-bilateral filter (used when OpenImageDenoise is missing).

    ``shading = color / albedo`` is smooth where the noise is; it is averaged over a
    ``(2 radius + 1)^2`` window with weights from normal and albedo differences (so edges and
    texture stay sharp) and a range term on the log shading, then multiplied by the albedo again.
    """
    eps = 0.02
    safe_albedo = np.maximum(albedo, eps)
    shading = color / safe_albedo
    log_shading = np.log1p(shading.mean(axis=2))
    total = np.zeros_like(shading)
    weights = np.zeros(shading.shape[:2], dtype=np.float32)
    height, width = shading.shape[:2]
    pad = radius
    padded = [np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge") for a in (shading, albedo, normal)]
    padded_log = np.pad(log_shading, pad, mode="edge")
    spatial = 2.0 * (radius / 2.0) ** 2
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            window = (slice(pad + dy, pad + dy + height), slice(pad + dx, pad + dx + width))
            d_normal = ((padded[2][window] - normal) ** 2).sum(axis=2)
            d_albedo = ((padded[1][window] - albedo) ** 2).sum(axis=2)
            d_log = (padded_log[window] - log_shading) ** 2
            w = np.exp(-(dx * dx + dy * dy) / spatial - d_normal / (2 * sigma_normal ** 2)
                       - d_albedo / (2 * sigma_albedo ** 2) - d_log / (2 * sigma_shading ** 2)).astype(np.float32)
            total += w[..., None] * padded[0][window]
            weights += w
    return (total / weights[..., None]) * safe_albedo + (color - shading * safe_albedo)


def write_jpeg(srgb: np.ndarray, path: Path, quality: int) -> None:
    pixels = np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)
    try:
        from PIL import Image
        Image.fromarray(pixels).save(path, quality=quality, subsampling=2, optimize=True)
    except ImportError:
        _write_with_blender(pixels, path, "JPEG", quality)


def write_png(srgb: np.ndarray, path: Path) -> None:
    pixels = np.clip(np.round(srgb * 255.0), 0, 255).astype(np.uint8)
    try:
        from PIL import Image
        Image.fromarray(pixels).save(path)
    except ImportError:
        _write_with_blender(pixels, path, "PNG", 100)


def _write_with_blender(pixels: np.ndarray, path: Path, file_format: str, quality: int) -> None:
    height, width = pixels.shape[:2]
    image = bpy.data.images.new("out", width, height, alpha=True)
    rgba = np.concatenate([pixels[::-1] / 255.0, np.ones((height, width, 1))], axis=2).astype(np.float32)
    image.pixels.foreach_set(rgba.ravel())
    image.filepath_raw = str(path)
    image.file_format = file_format
    scene = bpy.context.scene
    scene.render.image_settings.quality = quality
    image.save()
    bpy.data.images.remove(image)


# ---------------------------------------------------------------------------- main
def projection_check(camera, lens: Lens, points: list[Vector]) -> float:
    """Largest pixel difference between our ``K``/pose projection and Blender's own camera frame."""
    from bpy_extras.object_utils import world_to_camera_view

    scene = bpy.context.scene
    world_to_camera = camera.matrix_world.inverted()
    worst = 0.0
    for point in points:
        local = world_to_camera @ point  # OpenGL camera axes
        if local.z > -0.1:
            continue
        u = lens.fx * (local.x / -local.z) + lens.cx
        v = lens.fy * (-local.y / -local.z) + lens.cy
        ndc = world_to_camera_view(scene, camera, point)  # (0,0) bottom left of the padded render
        u_blender = ndc.x * lens.render_w - lens.pad_left
        v_blender = (1.0 - ndc.y) * lens.render_h - lens.pad_top
        if 0.0 <= u <= lens.w and 0.0 <= v <= lens.h:  # Blender's float32 maths is less exact far outside
            worst = max(worst, abs(u - u_blender), abs(v - v_blender))
    return worst


def exposure_jitter(args: argparse.Namespace) -> list[tuple[float, list[float]]]:
    """Per frame: a log-uniform gain and per-channel white-balance factors."""
    rng = np.random.default_rng([args.seed, 7])
    low, high = np.log(args.gain_range[0]), np.log(args.gain_range[1])
    return [(float(np.exp(rng.uniform(low, high))),
             [float(v) for v in rng.uniform(1.0 - args.wb_jitter, 1.0 + args.wb_jitter, 3)])
            for _ in range(args.frames)]


def to_srgb(linear: np.ndarray, exposure: float, gain: float, wb: list[float]) -> np.ndarray:
    return srgb_encode(linear * (exposure * gain) * np.asarray(wb, dtype=np.float32))


def build_scene() -> None:
    build_shell()
    build_door()
    build_table()
    build_object_of_interest()
    build_sofa()
    build_shelf()
    build_lamp_and_boxes()
    setup_world_and_lights()


def render_frame(index: int, camera, lens: Lens, args, work: Path, passes, use_fallback: bool):
    """Render frame ``index`` (the camera already posed) as the padded pinhole; returns the linear image."""
    width, height, focal = lens.render_size(args.render_scale)
    set_pinhole(camera, focal, width, height)
    bpy.context.scene.cycles.seed = index
    result = render_passes(work, passes, index)
    color = result["Image"]
    if use_fallback:
        color = denoise_fallback(color, result["DiffCol"] + result["GlossCol"], result["Normal"])
    return color


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    args = parse_args(argv)
    args.out = args.out.resolve()
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    use_oidn = oidn_available() and not args.no_denoise
    use_fallback = not use_oidn and not args.no_denoise
    build_scene()
    setup_render(args, use_oidn)
    camera = make_camera()
    lens = Lens(args)
    print(f"[make_capture] fx={lens.fx:.2f} cx={lens.cx} cy={lens.cy} pinhole render "
          f"{lens.render_w}x{lens.render_h} (pads l{lens.pad_left} r{lens.pad_right} t{lens.pad_top} "
          f"b{lens.pad_bottom}), undistortion residual {lens.residual_px:.1e} px, "
          f"denoiser: {'OpenImageDenoise' if use_oidn else 'numpy fallback' if use_fallback else 'none'}")
    passes = PASSES if use_fallback else ("Image",)
    work = Path(tempfile.mkdtemp(prefix="make_capture_"))
    setup_pass_output(work, passes)
    poses = walk_poses(args)
    jitter = exposure_jitter(args)
    if args.pinhole_dir:
        args.pinhole_dir.mkdir(parents=True, exist_ok=True)

    truth_path = args.out / "capture_truth.json"
    truth = json.loads(truth_path.read_text()) if args.first_frame > 0 and truth_path.exists() else {"frames": []}
    truth["frames"] = truth["frames"][:args.first_frame]
    probe = [OBJECT_CENTER, Vector((2.9, 2.4, 0.0)), Vector((-2.9, -2.4, 2.7)), Vector((0.5, -0.3, 0.75))]
    frames = []
    for index, (pose, (gain, wb)) in enumerate(zip(poses, jitter)):
        name = f"images/frame_{index:05d}.jpg"
        frames.append({"file_path": name, "transform_matrix": [[float(v) for v in row] for row in pose]})
        if index < args.first_frame:
            continue
        camera.matrix_world = pose
        bpy.context.view_layer.update()
        set_pinhole(camera, lens.fx, lens.render_w, lens.render_h)
        projection_error = projection_check(camera, lens, probe)
        if projection_error > 0.05:
            raise RuntimeError(f"frame {index}: K/pose projection differs from Blender's by {projection_error} px")
        start = time.perf_counter()
        linear = render_frame(index, camera, lens, args, work, passes, use_fallback)
        rendered = time.perf_counter()
        write_jpeg(to_srgb(lens.apply(linear), args.exposure, gain, wb), args.out / name, args.jpeg_quality)
        if args.pinhole_dir:
            write_png(to_srgb(lens.crop(linear), args.exposure, gain, wb), args.pinhole_dir / f"frame_{index:05d}.png")
        done = time.perf_counter()
        truth["frames"].append({"file_path": name, "gain": gain, "white_balance_rgb": wb,
                                "render_seconds": round(rendered - start, 2),
                                "total_seconds": round(done - start, 2)})
        print(f"[make_capture] frame {index + 1}/{args.frames}: render {rendered - start:.1f} s, "
              f"post {done - rendered:.1f} s", flush=True)
        write_truth(truth_path, truth, args, lens, use_oidn, use_fallback)

    if args.check_render:
        check_render(args, camera, lens, poses[0], jitter[0], work, passes, use_fallback)
    shutil.rmtree(work, ignore_errors=True)
    transforms = {**lens.json(), "frames": frames}
    (args.out / "transforms.json").write_text(json.dumps(transforms, indent=2) + "\n")
    times = [f["render_seconds"] for f in truth["frames"]]
    if times:
        print(f"[make_capture] done: {len(times)} frames, mean render {np.mean(times):.1f} s, "
              f"mean total {np.mean([f['total_seconds'] for f in truth['frames']]):.1f} s per frame")


def write_truth(path: Path, truth: dict, args, lens: Lens, use_oidn: bool, use_fallback: bool) -> None:
    truth.update({
        "note": "ground truth of the simulated phone effects; not for the engine",
        "seed": args.seed, "samples": args.samples, "exposure": args.exposure,
        "denoiser": "OpenImageDenoise" if use_oidn else ("numpy_fallback" if use_fallback else "none"),
        "linear_pipeline": "jpeg = sRGB(clip(linear * exposure * gain * white_balance_rgb))",
        "hfov_degrees": args.hfov,
        "pinhole_render": {"width": lens.render_w, "height": lens.render_h, "pad_left": lens.pad_left,
                           "pad_right": lens.pad_right, "pad_top": lens.pad_top, "pad_bottom": lens.pad_bottom},
        "undistortion_residual_px": lens.residual_px,
        "intrinsics": lens.json(),
        "object_center": list(OBJECT_CENTER),
        "room_size": list(ROOM),
    })
    path.write_text(json.dumps(truth, indent=2) + "\n")


def check_render(args, camera, lens: Lens, pose: Matrix, jitter: tuple, work: Path, passes, use_fallback) -> None:
    """Render frame 0 again with the smallest pinhole camera that has the output's K, crop it to ``w x h``."""
    args.check_render.mkdir(parents=True, exist_ok=True)
    dx, dy = round(2 * lens.cx - lens.w), round(2 * lens.cy - lens.h)
    left, top = max(0, -dx), max(0, -dy)
    width, height = lens.w + abs(dx), lens.h + abs(dy)
    assert abs(width / 2 - (lens.cx + left)) < 1e-9 and abs(height / 2 - (lens.cy + top)) < 1e-9
    camera.matrix_world = pose
    set_pinhole(camera, lens.fx, width, height)
    bpy.context.scene.cycles.seed = 1000
    result = render_passes(work, passes, 0)
    color = result["Image"]
    if use_fallback:
        color = denoise_fallback(color, result["DiffCol"] + result["GlossCol"], result["Normal"])
    color = color[top:top + lens.h, left:left + lens.w]
    write_png(to_srgb(color, args.exposure, *jitter), args.check_render / "frame_00000.png")


if __name__ == "__main__":
    main()
