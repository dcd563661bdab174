"""Structure-from-motion for a bare folder of photos, through pycolmap (the ``sfm`` extra).

:func:`reconstruct` runs COLMAP's classic pipeline — SIFT features, exhaustive matching,
incremental mapping — and writes the largest model as a binary COLMAP ``sparse/0``. For the
frames of a video, ``matching="sequential"`` matches each image only with its neighbours in
name order (frames named in time order overlap with their neighbours): about
:data:`SEQUENTIAL_OVERLAP` pairs per image instead of ``N-1``.

The default camera model is ``SIMPLE_RADIAL`` (COLMAP's own default: one focal length and
one radial distortion coefficient), which registers real photos better than a pinhole; the
COLMAP loader undistorts distorted models. Pass ``camera_model="PINHOLE"`` for rendered or
already undistorted images.

Example::

    >>> from pathlib import Path
    >>> from render3d.data.sfm import reconstruct
    >>> model = reconstruct(Path("photos"), Path("photos_sfm"))  # doctest: +SKIP
    >>> model
    PosixPath('photos_sfm/sparse/0')
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from render3d.data.images import IMAGE_EXTENSIONS, list_image_files
from render3d.errors import ConfigError, DataError, first_line

__all__ = [
    "reconstruct", "similarity_alignment", "quiet_pycolmap", "extraction_options", "CAMERA_MODELS", "MATCHING", "MIN_REGISTERED_FRACTION",
    "SEQUENTIAL_OVERLAP", "SMALL_IMAGE_SIDE",
]

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
MATCHING = ("exhaustive", "sequential")
# Sequential matching pairs each image with the next SEQUENTIAL_OVERLAP images in name order
# (COLMAP's default) and, by its quadratic overlap, with the images 2**k ahead, k < SEQUENTIAL_OVERLAP.
SEQUENTIAL_OVERLAP = 10
MIN_REGISTERED_FRACTION = 0.5
SMALL_IMAGE_SIDE = 400
_MIN_IMAGES = 3


@contextlib.contextmanager
def quiet_pycolmap() -> Iterator:
    """pycolmap with COLMAP's per-step INFO and WARNING lines (which drown a progress bar) silenced.

    Raises:
        DataError: pycolmap is not installed.
    """
    try:
        import pycolmap
    except ImportError:
        raise DataError("structure-from-motion needs pycolmap: pip install 'render3d[sfm]'") from None
    log_level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = pycolmap.logging.ERROR
    try:
        yield pycolmap
    finally:
        pycolmap.logging.minloglevel = log_level


def _list_images(image_dir: Path) -> list[str]:
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: not a folder of images")
    names = [path.name for path in list_image_files(image_dir)]
    if len(names) < _MIN_IMAGES:
        raise DataError(
            f"{image_dir}: structure-from-motion needs at least {_MIN_IMAGES} images "
            f"({', '.join(IMAGE_EXTENSIONS)}), found {len(names)}"
        )
    return names


def _are_small(image_dir: Path, names: list[str]) -> bool:
    """True when every image is under :data:`SMALL_IMAGE_SIDE` pixels on its longest side."""
    from PIL import Image, UnidentifiedImageError

    longest = 0
    for name in names:
        try:
            with Image.open(image_dir / name) as image:
                longest = max(longest, *image.size)
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"{image_dir / name}: cannot read the image: {error}") from None
    return longest < SMALL_IMAGE_SIDE


def _pipeline_options(pycolmap, small_images: bool, seed: int):
    """Feature extraction and mapping options: COLMAP's defaults, with a small-image profile.

    Images of a few hundred pixels give only ~150 SIFT features at COLMAP's 2x upsampling
    and too few inliers for its registration thresholds. For them SIFT starts one octave
    lower (4x upsampling, about twice the features) and the initial pair and the
    registration of further images accept 50 and 15 inliers instead of 100 and 30. On the
    160-pixel demo scene this turns two half models (36 of 52 images) into one of all 52.
    """
    extraction = extraction_options(pycolmap, small_images)
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.random_seed = seed
    if small_images:
        mapping.mapper.init_min_num_inliers = 50
        mapping.mapper.abs_pose_min_num_inliers = 15
    return extraction, mapping


def extraction_options(pycolmap, small_images: bool):
    """COLMAP's SIFT options; for images under :data:`SMALL_IMAGE_SIDE` pixels SIFT starts one
    octave lower (4x upsampling, about twice the features; see :func:`_pipeline_options`)."""
    extraction = pycolmap.FeatureExtractionOptions()
    if small_images:
        extraction.sift.first_octave = -2
    return extraction


def _match(pycolmap, database: Path, matching: str) -> None:
    """Match the features of the images in ``database``: all pairs, or neighbours in name order."""
    if matching == "sequential":
        pairing = pycolmap.SequentialPairingOptions(overlap=SEQUENTIAL_OVERLAP)
        pycolmap.match_sequential(database, pairing_options=pairing)
    else:
        pycolmap.match_exhaustive(database)


def _run_pipeline(pycolmap, image_dir: Path, names: list[str], work: Path, camera_model: str,
                  single_camera: bool, matching: str, seed: int, progress: bool):
    """Features, matching and incremental mapping; returns the largest reconstruction or None."""
    from tqdm.auto import tqdm

    database = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    camera_mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    extraction, mapping = _pipeline_options(pycolmap, _are_small(image_dir, names), seed)
    pycolmap.set_random_seed(seed)

    with tqdm(total=len(names), desc="sfm: registered images", unit="img", disable=not progress) as bar:
        bar.set_postfix_str("extracting features")
        pycolmap.extract_features(
            database, image_dir, image_names=names, camera_mode=camera_mode,
            reader_options=reader, extraction_options=extraction,
        )
        bar.set_postfix_str("matching")
        _match(pycolmap, database, matching)
        bar.set_postfix_str("mapping")
        models_dir = work / "models"
        models_dir.mkdir()
        models = pycolmap.incremental_mapping(
            database, image_dir, models_dir, options=mapping, next_image_callback=lambda: bar.update(1)
        )
        best = max(models.values(), key=lambda model: model.num_reg_images(), default=None)
        bar.n = 0 if best is None else best.num_reg_images()
        bar.set_postfix_str("done")
    return best


def reconstruct(
    image_dir: Path,
    output_dir: Path,
    *,
    camera_model: str = "SIMPLE_RADIAL",
    single_camera: bool = True,
    matching: str = "exhaustive",
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Recover camera poses and sparse points of a folder of photos with pycolmap.

    Runs SIFT feature extraction, feature matching and incremental mapping, keeps the
    model that registered the most images and writes it as binary COLMAP
    (``cameras.bin``, ``images.bin``, ``points3D.bin``; image names are relative to
    ``image_dir``) into ``output_dir/sparse/0``, replacing a model already there. The work
    happens in a temporary folder: a failed run leaves no partial model behind.

    Args:
        image_dir: folder holding the photos (``.jpg``, ``.png``, ...; at least 3).
        output_dir: folder that receives ``sparse/0`` (created if missing).
        camera_model: COLMAP camera model, one of :data:`CAMERA_MODELS`. Distorted models
            (``SIMPLE_RADIAL``, ``RADIAL``, ``OPENCV``) are undistorted by the COLMAP loader.
        single_camera: all photos share one camera (one set of intrinsics).
        matching: one of :data:`MATCHING`: ``"exhaustive"`` matches every pair of images (any
            set of photos); ``"sequential"`` only neighbours in name order (video frames named
            in time order; far fewer pairs, so much faster for a hundred frames or more).
        seed: seed of COLMAP's random sampling (RANSAC, initial pair trials).
        progress: show a progress bar of the registered images.

    Returns:
        The model folder ``output_dir/sparse/0``.

    Raises:
        DataError: pycolmap is not installed, the folder holds fewer than 3 images, or
            mapping registers fewer than half of the images.
        ConfigError: ``camera_model`` is not one of :data:`CAMERA_MODELS`, or ``matching``
            not one of :data:`MATCHING`.
    """
    image_dir, output_dir = Path(image_dir), Path(output_dir)
    if camera_model not in CAMERA_MODELS:
        raise ConfigError(f"reconstruct: camera_model must be one of {', '.join(CAMERA_MODELS)}, got {camera_model!r}")
    if matching not in MATCHING:
        raise ConfigError(f"reconstruct: matching must be one of {', '.join(MATCHING)}, got {matching!r}")
    names = _list_images(image_dir)
    with quiet_pycolmap() as pycolmap:
        output_dir.mkdir(parents=True, exist_ok=True)
        return _reconstruct_in_temp(pycolmap, image_dir, names, output_dir, camera_model, single_camera, matching,
                                    seed, progress)


def _reconstruct_in_temp(pycolmap, image_dir: Path, names: list[str], output_dir: Path, camera_model: str,
                         single_camera: bool, matching: str, seed: int, progress: bool) -> Path:
    """Run the pipeline in a temporary folder inside ``output_dir``; move the model to ``sparse/0``."""
    with tempfile.TemporaryDirectory(prefix=".sfm-", dir=output_dir) as work:
        work = Path(work)
        try:
            model = _run_pipeline(pycolmap, image_dir, names, work, camera_model, single_camera, matching, seed,
                                  progress)
        except RuntimeError as error:  # pycolmap reports its failures as RuntimeError
            first = first_line(error)
            raise DataError(f"{image_dir}: structure-from-motion failed: {first}") from None
        registered = 0 if model is None else model.num_reg_images()
        if registered < MIN_REGISTERED_FRACTION * len(names):
            raise DataError(
                f"{image_dir}: structure-from-motion registered {registered} of {len(names)} images "
                f"(needs at least {MIN_REGISTERED_FRACTION:.0%}); the photos need more overlap and texture"
            )
        staged = work / "sparse0"
        staged.mkdir()
        model.write_binary(staged)
        target = output_dir / "sparse" / "0"
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def similarity_alignment(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``target ~ scale * rotation @ source + translation`` (Umeyama, 1991).

    Used to compare a structure-from-motion model, known only up to a similarity, with
    known camera centres.

    Args:
        source: ``[N,3]`` float points (for example reconstructed camera centres), N >= 3.
        target: ``[N,3]`` float corresponding points (for example true camera centres).

    Returns:
        ``scale`` (float), ``rotation`` ``[3,3]`` float64 (a proper rotation, det +1) and
        ``translation`` ``[3]`` float64.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3 or len(source) < 3:
        raise ConfigError(f"similarity_alignment: need two [N,3] arrays with N >= 3, got {source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ reflection @ vt
    source_variance = (source_centred**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ reflection) / source_variance)
    translation = target_mean - scale * rotation @ source_mean
    return scale, rotation, translation
