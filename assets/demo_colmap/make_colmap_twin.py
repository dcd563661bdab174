"""Build the COLMAP twin of the NeRF-synthetic demo scene from its known poses.

Usage (from the repository root, with pycolmap installed)::

    python assets/demo_colmap/make_colmap_twin.py --source assets/demo --out assets/demo_colmap

Every view of every split of ``--source`` is composited over white (in sRGB values, as
the NeRF-synthetic loaders composite) and saved as ``images/{split}_{index:03d}.jpg``.
pycolmap then extracts SIFT features, matches them exhaustively, and triangulates 3D
points with the cameras held at the KNOWN poses (one shared PINHOLE camera; Blender's
OpenGL camera-to-world converted to COLMAP's OpenCV world-to-camera). pycolmap writes
the model as binary ``sparse/0/{cameras,images,points3D}.bin`` and as text
``sparse_txt/0/{cameras,images,points3D}.txt``.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MODEL_FILES = ("cameras", "images", "points3D")


def composite_views(source: Path, image_dir: Path, quality: int) -> tuple[dict[str, np.ndarray], float, int, int]:
    """Write every RGBA view of ``source`` over white as JPEG into ``image_dir``.

    Returns the camera-to-world poses ``{name: [4,4] float64}`` (OpenGL axes), the shared
    ``camera_angle_x`` and the image width and height.
    """
    image_dir.mkdir(parents=True, exist_ok=True)
    poses, angles, sizes = {}, set(), set()
    for split in ("train", "val", "test"):
        meta = json.loads((source / f"transforms_{split}.json").read_text())
        angles.add(meta["camera_angle_x"])
        for index, frame in enumerate(meta["frames"]):
            rgba = np.asarray(Image.open(source / f"{frame['file_path']}.png").convert("RGBA"), dtype=np.float64) / 255.0
            rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
            name = f"{split}_{index:03d}.jpg"
            Image.fromarray(np.round(rgb * 255.0).astype(np.uint8)).save(image_dir / name, quality=quality)
            poses[name] = np.asarray(frame["transform_matrix"], dtype=np.float64)
            sizes.add(rgba.shape[:2])
    if len(angles) != 1 or len(sizes) != 1:
        raise SystemExit(f"{source}: splits disagree on camera_angle_x {angles} or image size {sizes}")
    (height, width), = sizes
    return poses, angles.pop(), width, height


def cam_from_world_opencv(c2w_opengl: np.ndarray) -> np.ndarray:
    """``[3,4]`` COLMAP world-to-camera ``[R|t]`` (OpenCV axes) from an OpenGL camera-to-world ``[4,4]``."""
    c2w = c2w_opengl.copy()
    c2w[:3, 1:3] *= -1.0
    rotation = c2w[:3, :3].T
    return np.concatenate([rotation, -rotation @ c2w[:3, 3:4]], axis=1)


def triangulate_known_poses(image_dir: Path, poses: dict[str, np.ndarray], fx: float, width: int, height: int, work: Path):
    """Features, exhaustive matches and triangulation with the poses held fixed; returns the reconstruction."""
    import pycolmap

    pycolmap.set_random_seed(0)
    database = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = f"{fx},{fx},{width / 2},{height / 2}"
    pycolmap.extract_features(database, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader)
    pycolmap.match_exhaustive(database)

    reconstruction = pycolmap.Reconstruction()
    with pycolmap.Database.open(database) as db:
        (camera,) = db.read_all_cameras()
        reconstruction.add_camera_with_trivial_rig(camera)
        for image in sorted(db.read_all_images(), key=lambda im: im.name):
            posed = pycolmap.Image(name=image.name, camera_id=camera.camera_id, image_id=image.image_id)
            pose = pycolmap.Rigid3d(cam_from_world_opencv(poses[image.name]))
            reconstruction.add_image_with_trivial_frame(posed, pose)
    triangulated = work / "triangulated"
    triangulated.mkdir()
    return pycolmap.triangulate_points(reconstruction, database, image_dir, triangulated)


def write_model(reconstruction, folder: Path, text: bool) -> None:
    """Write ``cameras``, ``images`` and ``points3D`` (binary or text) into ``folder``, replacing it."""
    with tempfile.TemporaryDirectory(dir=folder.parent.parent) as staging:
        staging = Path(staging)
        (reconstruction.write_text if text else reconstruction.write_binary)(staging)
        final = folder.parent / f".{folder.name}.new"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir(parents=True)
        suffix = ".txt" if text else ".bin"
        for name in MODEL_FILES:
            shutil.move(str(staging / f"{name}{suffix}"), final / f"{name}{suffix}")
        shutil.rmtree(folder, ignore_errors=True)
        final.rename(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("assets/demo"), help="NeRF-synthetic scene folder")
    parser.add_argument("--out", type=Path, default=Path("assets/demo_colmap"), help="COLMAP scene folder")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    args = parser.parse_args()

    image_dir = args.out / "images"
    shutil.rmtree(image_dir, ignore_errors=True)
    poses, angle_x, width, height = composite_views(args.source, image_dir, args.quality)
    fx = 0.5 * width / math.tan(0.5 * angle_x)
    with tempfile.TemporaryDirectory() as work:
        reconstruction = triangulate_known_poses(image_dir, poses, fx, width, height, Path(work))
    (args.out / "sparse").mkdir(parents=True, exist_ok=True)
    (args.out / "sparse_txt").mkdir(parents=True, exist_ok=True)
    write_model(reconstruction, args.out / "sparse" / "0", text=False)
    write_model(reconstruction, args.out / "sparse_txt" / "0", text=True)
    print(reconstruction.summary())


if __name__ == "__main__":
    main()
