"""A video as a capture: sharp-frame selection, the capture folder, its reuse and its errors.

Test videos are made at test time from the demo scene's COLMAP twin (52 renders of 160 pixels
around one object): the views ordered by the azimuth of their true camera centre, each one
followed by two Gaussian-blurred copies, so that windows of three frames hold one sharp frame.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

import render3d
from render3d.data import sfm, video_capture
from render3d.data.sfm import reconstruct, similarity_alignment
from render3d.data.video_capture import (
    MANIFEST,
    is_video_input,
    list_videos,
    prepare_capture,
    sharpest_per_window,
    sharpness,
)
from render3d.errors import ConfigError, DataError

pytest.importorskip("imageio_ffmpeg")

ASSETS = Path(__file__).resolve().parents[2] / "assets"
TWIN_IMAGES = ASSETS / "demo_colmap" / "images"
BLURRED_COPIES = 2  # each sharp view is followed by this many blurred copies


def _views_by_azimuth() -> list[tuple[str, np.ndarray]]:
    """``(twin image name, [3] true camera centre)`` of all 52 views, sorted by azimuth."""
    views = []
    for split in ("train", "val", "test"):
        meta = json.loads((ASSETS / "demo" / f"transforms_{split}.json").read_text())
        for index, frame in enumerate(meta["frames"]):
            views.append((f"{split}_{index:03d}.jpg", np.asarray(frame["transform_matrix"])[:3, 3]))
    return sorted(views, key=lambda view: np.arctan2(view[1][1], view[1][0]))


def _blurred(image: np.ndarray, radius: float = 2.0) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def _write_video(path: Path, frames) -> Path:
    """H.264 MP4 of uint8 ``[H,W,3]`` frames at 30 fps, nearly lossless."""
    import imageio.v2 as imageio

    with imageio.get_writer(path, format="FFMPEG", fps=30, codec="libx264", quality=10) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def _orbit_frames(views) -> list[np.ndarray]:
    """Each view sharp, then :data:`BLURRED_COPIES` blurred copies: frame ``i`` shows view ``i // 3``."""
    frames = []
    for name, _ in views:
        sharp = np.asarray(Image.open(TWIN_IMAGES / name).convert("RGB"))
        frames += [sharp] + [_blurred(sharp)] * BLURRED_COPIES
    return frames


@pytest.fixture(scope="module")
def orbit_video(tmp_path_factory) -> Path:
    """156 frames of 160x160: the 52 views by azimuth, as (sharp, blurred, blurred)."""
    return _write_video(tmp_path_factory.mktemp("video") / "orbit.mp4", _orbit_frames(_views_by_azimuth()))


def _fake_reconstruct(calls: list):
    """Stands in for structure-from-motion: records its arguments, writes empty model files."""
    def fake(image_dir: Path, output_dir: Path, **options):
        calls.append((sorted(p.name for p in image_dir.iterdir()), options))
        model = output_dir / "sparse" / "0"
        model.mkdir(parents=True)
        for name in ("cameras.bin", "images.bin", "points3D.bin"):
            (model / name).write_bytes(b"")
        return model
    return fake


def _assert_left_clean(folder: Path) -> None:
    """No frames, model, manifest or temporary folder of a failed capture in ``folder``."""
    leftovers = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert leftovers == [], leftovers


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- 1. sharpness and frame selection -------------------------------------------------------------

def test_sharpness_ranks_blurred_frames_below_sharp_ones():
    sharp = np.asarray(Image.open(TWIN_IMAGES / "train_000.jpg").convert("RGB"))
    scores = [sharpness(sharp), sharpness(_blurred(sharp, 1.0)), sharpness(_blurred(sharp, 3.0))]
    assert scores[0] > 1.5 * scores[1] > 1.5 * scores[2] > 0
    # A 4K frame is scored on a copy strided down to 480 pixels, not at full size.
    big = np.random.default_rng(0).integers(0, 256, size=(2160, 3840, 3), dtype=np.uint8)
    assert sharpness(big) == sharpness(big[::8, ::8])


def test_sharpest_per_window_keeps_the_sharpest_frame_of_each_window():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    sharp, soft = texture, _blurred(texture, 2.0)
    # 30 frames, 10 windows of 3: the sharp frame sits first, second or third in its window.
    positions = [w % 3 for w in range(10)]
    frames = [sharp if i % 3 == positions[i // 3] else soft for i in range(30)]
    picked = list(sharpest_per_window(iter(frames), total=30, count=10))
    assert [index for index, _ in picked] == [3 * w + positions[w] for w in range(10)]
    assert all(frame is sharp for _, frame in picked)

    # Equal scores keep each window's first frame: windows of 10 frames in 4 are 3, 2, 3, 2 long.
    flat = [np.full((8, 8, 3), 7, np.uint8)] * 10
    assert [index for index, _ in sharpest_per_window(flat, total=10, count=4)] == [0, 3, 5, 8]
    assert [index for index, _ in sharpest_per_window(flat, total=10, count=10)] == list(range(10))
    # A stream shorter than announced leaves its last windows empty; a longer one fills the last.
    assert [index for index, _ in sharpest_per_window(flat[:6], total=10, count=4)] == [0, 3, 5]
    assert [index for index, _ in sharpest_per_window(flat, total=6, count=3)] == [0, 2, 4]


def test_capture_keeps_the_sharp_frame_of_each_window(orbit_video: Path, tmp_path: Path, monkeypatch):
    calls = []
    monkeypatch.setattr(sfm, "reconstruct", _fake_reconstruct(calls))
    folder = prepare_capture(orbit_video, tmp_path / "capture", n_frames=52, progress=False)
    assert folder == tmp_path / "capture"
    names = sorted(p.name for p in (folder / "images").iterdir())
    assert names == [f"orbit_{3 * view:06d}.jpg" for view in range(52)], "every window's sharp frame, in order"
    assert calls[0][0] == names and calls[0][1]["matching"] == "sequential"
    with Image.open(folder / "images" / names[0]) as image:
        assert (image.format, image.size) == ("JPEG", (160, 160))

    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["n_frames"] == 52 and manifest["seed"] == 0
    assert manifest["sources"] == [{"name": "orbit.mp4", "size": orbit_video.stat().st_size,
                                    "mtime_ns": orbit_video.stat().st_mtime_ns}]
    assert [frame["image"] for frame in manifest["frames"]] == names
    assert manifest["frames"][1] == {"image": "orbit_000003.jpg", "video": "orbit.mp4", "index": 3, "time": 0.1}
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "images", "sparse"]

    # More frames asked for than the video has: every frame, once.
    every = prepare_capture(orbit_video, tmp_path / "every", n_frames=1000, progress=False)
    assert len(list((every / "images").iterdir())) == 52 * (1 + BLURRED_COPIES)


def test_a_folder_of_videos_shares_the_count_by_length(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sfm, "reconstruct", _fake_reconstruct([]))
    frames = _orbit_frames(_views_by_azimuth()[:30])
    clips = tmp_path / "clips"
    clips.mkdir()
    _write_video(clips / "b_second.mp4", frames[30:90])  # 60 frames
    _write_video(clips / "a_first.mov", frames[:30])  # 30 frames
    (clips / "notes.txt").write_text("not a video")
    assert is_video_input(clips)
    assert list_videos(clips) == [clips / "a_first.mov", clips / "b_second.mp4"]

    folder = prepare_capture(clips, tmp_path / "capture", n_frames=12, progress=False)
    names = sorted(p.name for p in (folder / "images").iterdir())
    for stem, length, share in (("a_first", 30, 4), ("b_second", 60, 8)):
        picked = [int(name.rsplit("_", 1)[1][:-4]) for name in names if name.startswith(stem + "_")]
        assert [index * share // length for index in picked] == list(range(share)), "one frame per window"
        assert all(index % 3 == 0 for index in picked), "the sharp frame of each window"
    assert len(names) == 12
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [source["name"] for source in manifest["sources"]] == ["a_first.mov", "b_second.mp4"]
    assert {frame["video"] for frame in manifest["frames"]} == {"a_first.mov", "b_second.mp4"}


def test_is_video_input(tmp_path: Path, orbit_video: Path):
    assert is_video_input(orbit_video)
    assert is_video_input(tmp_path / "missing.MOV"), "a missing video is still one, so that its error names it"
    assert not is_video_input(TWIN_IMAGES / "train_000.jpg")
    assert not is_video_input(tmp_path)  # empty folder
    photos_and_video = tmp_path / "mixed"
    (photos_and_video / "images").mkdir(parents=True)
    (photos_and_video / "clip.mp4").write_bytes(b"")
    assert is_video_input(photos_and_video)
    (photos_and_video / "images" / "a.jpg").write_bytes((TWIN_IMAGES / "train_000.jpg").read_bytes())
    assert not is_video_input(photos_and_video), "images/ make it a folder of photos"


# --- 2. end to end: frames, structure-from-motion, loading, reuse ---------------------------------

@pytest.mark.sfm
def test_video_becomes_a_colmap_scene_with_the_true_cameras(orbit_video: Path, tmp_path: Path, monkeypatch):
    pycolmap = pytest.importorskip("pycolmap")
    overlaps = []
    match_sequential = pycolmap.match_sequential

    def spy(database, **options):
        overlaps.append(options["pairing_options"].overlap)
        return match_sequential(database, **options)

    def refuse(*args, **kwargs):
        raise AssertionError("a video is matched sequentially")

    monkeypatch.setattr(pycolmap, "match_sequential", spy)
    monkeypatch.setattr(pycolmap, "match_exhaustive", refuse)
    folder = tmp_path / "capture"
    # 52 windows of (sharp, blurred, blurred): every view once. These 160-pixel views are
    # scattered over a hemisphere, so fewer of them (40) leave a quarter of the frames unregistered.
    prepare_capture(orbit_video, folder, n_frames=52, progress=False)
    assert overlaps == [sfm.SEQUENTIAL_OVERLAP]
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "images", "sparse"]

    data = render3d.load_dataset(folder, "all")
    assert data.format == "colmap"
    views = _views_by_azimuth()
    indices = [int(Path(name).stem.rsplit("_", 1)[1]) for name in data.image_names]
    assert all(index % 3 == 0 for index in indices), "only sharp frames were kept"
    # SIMPLE_RADIAL, sequential matching: all 52 register with seeds 0-2.
    assert len(indices) >= 0.9 * 52
    found = data.cameras.c2w[:, :3, 3].double().numpy()
    true = np.stack([views[index // 3][1] for index in indices])
    scale, rotation, translation = similarity_alignment(found, true)
    error = np.linalg.norm(found @ rotation.T * scale + translation - true, axis=1)
    # Cameras sit 4.1 units from the object; over seeds 0-2 the mean error was 0.08-0.09, the
    # median 0.07-0.08 and the largest 0.21-0.42 (exhaustive matching: mean 0.05, max 0.17).
    assert error.mean() < 0.15
    assert np.median(error) < 0.12
    assert error.max() < 0.7

    # The same request again reuses the folder: nothing is decoded or reconstructed.
    def must_not_run(*args, **kwargs):
        raise AssertionError("the capture should have been reused")

    before = {p.name: p.stat().st_mtime_ns for p in (folder / "images").iterdir()}
    monkeypatch.setattr(video_capture, "_probe", must_not_run)
    monkeypatch.setattr(video_capture, "_decode", must_not_run)
    monkeypatch.setattr(sfm, "reconstruct", must_not_run)
    assert prepare_capture(orbit_video, folder, n_frames=52, progress=False) == folder
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "images").iterdir()} == before

    # Another frame count makes a new capture.
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(sfm, "reconstruct", _fake_reconstruct(calls))
    prepare_capture(orbit_video, folder, n_frames=26, progress=False)
    assert len(calls) == 1 and len(calls[0][0]) == 26
    assert len(list((folder / "images").iterdir())) == 26
    assert json.loads((folder / MANIFEST).read_text())["n_frames"] == 26


def test_reconstruct_refuses_an_unknown_matching(tmp_path: Path):
    with pytest.raises(ConfigError, match="matching must be one of exhaustive, sequential"):
        reconstruct(TWIN_IMAGES, tmp_path / "out", matching="vocab_tree", progress=False)


# --- 3. bad inputs: one-line errors, nothing half written -----------------------------------------

def test_bad_sources_are_one_line_errors(tmp_path: Path, orbit_video: Path):
    folder = tmp_path / "capture"
    with pytest.raises(DataError) as excinfo:
        prepare_capture(tmp_path / "missing.mp4", folder, progress=False)
    assert _one_line_error(excinfo).endswith("missing.mp4: no such video file or folder")

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(DataError) as excinfo:
        prepare_capture(text, folder, progress=False)
    assert "notes.mp4: cannot read the video: " in _one_line_error(excinfo)

    sharp = np.asarray(Image.open(TWIN_IMAGES / "train_000.jpg").convert("RGB"))
    short = _write_video(tmp_path / "short.mp4", [sharp, sharp])
    with pytest.raises(DataError) as excinfo:
        prepare_capture(short, folder, progress=False)
    assert "short.mp4: 2 frames; a capture needs at least 3" in _one_line_error(excinfo)

    with pytest.raises(DataError, match=r"train_000.jpg: not a video file \(\.mp4 \.mov"):
        prepare_capture(TWIN_IMAGES / "train_000.jpg", folder, progress=False)
    with pytest.raises(DataError, match="no video files"):
        prepare_capture(TWIN_IMAGES, folder, progress=False)
    same_stem = tmp_path / "same_stem"
    same_stem.mkdir()
    for name in ("clip.mp4", "clip.mov"):
        (same_stem / name).write_bytes(orbit_video.read_bytes())
    with pytest.raises(DataError, match="several videos are named clip"):
        prepare_capture(same_stem, folder, progress=False)
    for bad in (2, 0, 3.5, True, "40"):
        with pytest.raises(ConfigError, match="n_frames: expected an integer >= 3"):
            prepare_capture(orbit_video, folder, n_frames=bad, progress=False)
    _assert_left_clean(folder)


def test_missing_ffmpeg_plugin_gives_install_hint(tmp_path: Path, orbit_video: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` raise ImportError
    with pytest.raises(DataError) as excinfo:
        prepare_capture(orbit_video, tmp_path / "capture", progress=False)
    assert _one_line_error(excinfo) == "reading video needs imageio-ffmpeg: pip install 'render3d[video]'"
    _assert_left_clean(tmp_path / "capture")


def test_failed_capture_leaves_the_folder_as_it_was(tmp_path: Path, orbit_video: Path, monkeypatch):
    def failing(image_dir: Path, output_dir: Path, **options):
        (output_dir / "sparse").mkdir()
        raise DataError(f"{image_dir}: structure-from-motion registered 2 of {len(list(image_dir.iterdir()))} images")

    folder = tmp_path / "capture"
    monkeypatch.setattr(sfm, "reconstruct", failing)
    with pytest.raises(DataError) as excinfo:
        prepare_capture(orbit_video, folder, n_frames=10, progress=False)
    assert _one_line_error(excinfo) == (
        f"{orbit_video}: frames of the video: structure-from-motion registered 2 of 10 images"
    )
    _assert_left_clean(folder)

    # A finished capture survives a failed new one, and is still reused afterwards.
    monkeypatch.setattr(sfm, "reconstruct", _fake_reconstruct([]))
    prepare_capture(orbit_video, folder, n_frames=10, progress=False)
    before = sorted(p.name for p in (folder / "images").iterdir())
    monkeypatch.setattr(sfm, "reconstruct", failing)
    with pytest.raises(DataError, match="registered 2 of 20 images"):
        prepare_capture(orbit_video, folder, n_frames=20, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "images", "sparse"]
    assert sorted(p.name for p in (folder / "images").iterdir()) == before
    assert json.loads((folder / MANIFEST).read_text())["n_frames"] == 10
    monkeypatch.setattr(video_capture, "_decode", failing)
    assert prepare_capture(orbit_video, folder, n_frames=10, progress=False) == folder

    # The manifest goes last: a capture interrupted before it is not taken for the old one.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.undo()
    monkeypatch.setattr(sfm, "reconstruct", _fake_reconstruct([]))
    monkeypatch.setattr(video_capture, "atomic_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_capture(orbit_video, folder, n_frames=20, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["images", "sparse"]
    with pytest.raises(DataError, match="holds images/ or sparse/ but no capture.json"):
        prepare_capture(orbit_video, folder, n_frames=10, progress=False)


def test_a_folder_with_other_images_is_not_overwritten(tmp_path: Path, orbit_video: Path):
    folder = tmp_path / "photos"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "mine.jpg").write_bytes((TWIN_IMAGES / "train_000.jpg").read_bytes())
    with pytest.raises(DataError) as excinfo:
        prepare_capture(orbit_video, folder, progress=False)
    assert "photos: holds images/ or sparse/ but no capture.json" in _one_line_error(excinfo)
    assert sorted(p.name for p in folder.rglob("*")) == ["images", "mine.jpg"]


# --- 4. fitting a video ----------------------------------------------------------------------------

@pytest.mark.sfm
def test_fit_of_a_video_keeps_its_capture_in_the_run_and_reuses_it(orbit_video: Path, tmp_path: Path, capsys,
                                                                   monkeypatch):
    pytest.importorskip("pycolmap")
    from render3d.apps.cli import main

    assert main(["info", str(orbit_video)]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [f"{orbit_video}: video capture, 1 video",
                                                        "  orbit.mp4: 156 frames, 30 fps, 160x160"]
    run = tmp_path / "run"
    fit = ["fit", str(orbit_video), "--method", "3dgs", "--steps", "3", "--out", str(run), "--quiet",
           "--config", "init_points=50"]
    assert main([*fit, "--frames", "52"]) == 0  # these views are scattered (see above): every sharp one
    assert "test: PSNR" in capsys.readouterr().out
    capture = run / "capture"
    assert json.loads((capture / MANIFEST).read_text())["n_frames"] == 52
    assert json.loads((run / "config.json").read_text())["data"] == str(capture.resolve())
    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"

    def must_not_run(*args, **kwargs):
        raise AssertionError("the run's capture should have been reused")

    monkeypatch.setattr(video_capture, "_decode", must_not_run)
    monkeypatch.setattr(sfm, "reconstruct", must_not_run)
    assert main([*fit, "--overwrite"]) == 0  # no --frames: the capture's own count
    with pytest.raises(ConfigError, match=r"data: fitting a video \(.*orbit.mp4\) needs out=RUN_DIR"):
        render3d.Scene.fit(orbit_video, "3dgs", steps=1, progress=False)


def test_frames_is_refused_for_anything_but_a_video(tmp_path: Path, capsys):
    from render3d.apps.cli import main

    assert main(["fit", str(ASSETS / "demo"), "--out", str(tmp_path / "run"), "--frames", "40"]) == 2
    assert "--frames chooses the frames of a video" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "run"), "--frames", "2"]) == 2
    assert "--frames: a capture needs at least 3 frames, got 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_holding_only_a_capture_counts_as_empty(tmp_path: Path):
    from render3d import rundir

    (tmp_path / "run" / rundir.CAPTURE).mkdir(parents=True)
    assert rundir.check_output_dir(tmp_path / "run") == tmp_path / "run"
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty"):
        rundir.check_output_dir(tmp_path / "run")
