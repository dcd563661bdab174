"""Sparse points for posed images that came without any, through pycolmap (the ``sfm`` extra).

A capture whose poses are known but whose points are not — instant-ngp's ``transforms.json``
from its ``colmap2nerf`` script, a nerfstudio folder without ``ply_file_path``, a COLMAP model
whose ``points3D`` is empty — gives 3D Gaussian Splatting nothing to start from but a random
cloud. :func:`triangulate` recovers the points COLMAP would have had: SIFT features of the
images as they are trained on (undistorted, at the training scale; pinhole cameras with the
dataset's intrinsics), matches between each image and its :data:`NEIGHBOURS` nearest cameras,
and COLMAP's triangulation with every pose held fixed (``colmap point_triangulator``). The
points are in the dataset's own world frame.

Example::

    >>> from render3d.data import load_dataset
    >>> from render3d.data.triangulation import triangulate
    >>> data = load_dataset("room", split="train", downscale=4)  # doctest: +SKIP
    >>> points, colors = triangulate(data)  # doctest: +SKIP
    >>> points.shape  # doctest: +SKIP
    torch.Size([5393, 3])
"""
from __future__ import annotations

import tempfile
from pathlib import Path
import numpy as np
import torch
from torch import Tensor

from render3d.data.dataset import Dataset, quantize
from render3d.data.sfm import SMALL_IMAGE_SIDE, extraction_options, quiet_pycolmap
from render3d.errors import DataError, first_line

__all__ = ["triangulate", "neighbour_pairs", "NEIGHBOURS"]

# Each image is matched with this many nearest cameras (by centre); all pairs below that.
NEIGHBOURS = 20


def neighbour_pairs(centers: Tensor, neighbours: int = NEIGHBOURS) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of each camera with its ``neighbours`` nearest by centre.

    Args:
        centers: ``[N,3]`` camera centres.
        neighbours: how many nearest cameras each one is paired with (all when fewer).

    Returns:
        The sorted, distinct pairs of indices.
    """
    count = centers.shape[0]
    distances = torch.cdist(centers.double(), centers.double())
    distances.fill_diagonal_(float("inf"))
    nearest = distances.topk(min(neighbours, count - 1), largest=False).indices
    return sorted({(min(i, j), max(i, j)) for i in range(count) for j in nearest[i].tolist()})


def triangulate(dataset: Dataset, *, progress: bool = True) -> tuple[Tensor, Tensor]:
    """The sparse points that the images of ``dataset`` see from their known cameras.

    Args:
        dataset: posed images (at least 2), as loaded for training.
        progress: show a progress bar of the stages.

    Returns:
        ``points`` ``[P,3]`` float32 in the dataset's world frame and their ``colors``
        ``[P,3]`` float32 in [0,1] (``P`` may be 0 when the images share no features).

    Raises:
        DataError: pycolmap is not installed, the dataset has fewer than 2 images or none
            loaded, or COLMAP fails.
    """
    if dataset.images is None or len(dataset) < 2:
        raise DataError(f"{dataset.root}: triangulating points needs at least 2 loaded images")
    with quiet_pycolmap() as pycolmap, tempfile.TemporaryDirectory(prefix="render3d-triangulation-") as work:
        try:
            model = _triangulate_in(pycolmap, dataset, Path(work), progress)
        except RuntimeError as error:  # pycolmap reports its failures as RuntimeError
            raise DataError(f"{dataset.root}: triangulating points failed: {first_line(error)}") from None
        points = np.array([point.xyz for point in model.points3D.values()], dtype=np.float32).reshape(-1, 3)
        colors = np.array([point.color for point in model.points3D.values()], dtype=np.float32).reshape(-1, 3)
    return torch.from_numpy(points), torch.from_numpy(colors / 255.0)


def _triangulate_in(pycolmap, dataset: Dataset, work: Path, progress: bool):
    """Write the images, extract and match features, triangulate; the model with its points."""
    from tqdm.auto import tqdm

    image_dir, database, pairs = work / "images", work / "database.db", work / "pairs.txt"
    with tqdm(total=4, desc="points from known poses", disable=not progress) as bar:
        bar.set_postfix_str("writing images")
        names = _write_images(dataset, image_dir)
        bar.update(1)
        bar.set_postfix_str("extracting features")
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "PINHOLE"
        small = max(dataset.cameras.width, dataset.cameras.height) < SMALL_IMAGE_SIDE
        pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
                                  reader_options=reader, extraction_options=extraction_options(pycolmap, small))
        bar.update(1)
        bar.set_postfix_str("matching")
        pairs.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in neighbour_pairs(dataset.cameras.centers.cpu())))
        pycolmap.match_image_pairs(database, pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pairs)))
        bar.update(1)
        bar.set_postfix_str("triangulating")
        (work / "model").mkdir()
        model = pycolmap.triangulate_points(_posed_model(pycolmap, dataset, database, names), database, image_dir,
                                            work / "model")
        model.extract_colors_for_all_images(str(image_dir))
        bar.update(1)
        bar.set_postfix_str(f"{model.num_points3D()} points")
    return model


def _write_images(dataset: Dataset, image_dir: Path) -> list[str]:
    """The dataset's images as 8-bit PNGs named in order; their names."""
    from PIL import Image

    image_dir.mkdir()
    names = []
    for index in range(len(dataset)):
        name = f"{index:05d}.png"
        pixels = quantize(dataset.image(index)).cpu().numpy()
        Image.fromarray(pixels).save(image_dir / name)
        names.append(name)
    return names


def _posed_model(pycolmap, dataset: Dataset, database_path: Path, names: list[str]):
    """A COLMAP model of the database's cameras, rigs, frames and images, each image's frame
    registered at the dataset's pose, each camera given the dataset's intrinsics (also written
    back to the database, where triangulation reads them)."""
    intrinsics = dataset.cameras.K.double().cpu().numpy()
    world_to_camera = dataset.cameras.w2c.double().cpu().numpy()
    index_of = {name: index for index, name in enumerate(names)}
    model = pycolmap.Reconstruction()
    with pycolmap.Database.open(database_path) as database:
        images = database.read_all_images()
        cameras = {camera.camera_id: camera for camera in database.read_all_cameras()}
        for image in images:
            K = intrinsics[index_of[image.name]]
            camera = cameras[image.camera_id]
            camera.params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
            database.update_camera(camera)
            model.add_camera(camera)
        for rig in database.read_all_rigs():
            model.add_rig(rig)
        for frame in database.read_all_frames():
            model.add_frame(frame)
    for image in images:
        pose = world_to_camera[index_of[image.name]]
        model.frame(image.frame_id).rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(pose[:3, :3]), pose[:3, 3])
        model.add_image(image)
        model.register_frame(image.frame_id)
    return model
