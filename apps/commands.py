"""What each ``render3d`` command does (parsing is in :mod:`render3d.apps.cli`).

Commands use only the public render3d API: :class:`render3d.Scene`, the loaders, camera
paths, metrics and the io helpers. Each returns an exit status (``None`` means 0).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import render3d
from render3d import rundir
from render3d.errors import ConfigError, DataError
from render3d.io.writable import check_writable
from render3d.methods._splat_file import SUFFIXES as SPLAT_SUFFIXES, is_splat_file
from render3d.rundir import RENDERS

# Representations the demo prefers, best first, among those installed.
DEMO_PREFERENCE = ("3dgs", "nerf")


def _echo(message: str) -> None:
    print(message, flush=True)


def _note_busy_machine() -> None:
    from render3d.cpu_share import busy_machine_note

    note = busy_machine_note()
    if note is not None:
        _echo(note)


def _load_scene(args: argparse.Namespace) -> "render3d.Scene":
    """The scene of ``args.run``: a run directory or a splat file (``.ply`` or ``.glb``)."""
    return render3d.Scene.load(args.run, device=getattr(args, "device", None),
                               background=getattr(args, "background", None))


def _data_for(scene: "render3d.Scene", data: str | None) -> Path:
    if data is not None:
        return Path(data)
    if scene.data_root is None:
        if scene.run_dir is None:
            raise ConfigError("a splat file has no dataset; pass --data DIR (or --orbit N to render)")
        raise ConfigError("the run does not record its dataset folder; pass --data DIR")
    return scene.data_root


def cmd_fit(args: argparse.Namespace) -> int:
    from render3d import distributed

    if args.nproc > 1 and distributed.launched_world_size() > 1:
        raise ConfigError("--nproc: this process is already one of a process group (torchrun); drop --nproc")
    if args.nproc > 1 and args.view:
        raise ConfigError("--view shows a fit in one process; drop --view or --nproc")
    if args.nproc > 1:
        check_writable(args.out, "--out", folder=True)
        return distributed.run_processes(_fit_rank, (args,), args.nproc)
    with distributed.process_group(args.device) as parallel:
        return _fit_command(args, parallel)


def _fit_rank(args: argparse.Namespace) -> int:
    """``fit`` in one of the processes ``--nproc`` started: its exit status, an error reported
    once for all ranks (:func:`render3d.apps.cli._report`)."""
    from render3d.apps.cli import _run

    return _run(argparse.Namespace(**{**vars(args), "nproc": 1}))


def _fit_command(args: argparse.Namespace, parallel) -> int:
    from render3d.data.shapes import is_shape_path

    check_writable(args.out, "--out", folder=True)
    if args.view and parallel.world_size > 1:
        raise ConfigError("--view shows a fit in one process; drop --view or fit in one process")
    method, seed, config = _fit_options(args)
    args.data = str(_video_capture(args, seed))
    # Shapes (meshes, point clouds) have no images to evaluate on; `eval --mesh-gt` compares the surface.
    split = None if args.no_eval or is_shape_path(args.data) else _evaluation_split(Path(args.data))
    if not parallel.is_main:  # rank 0 reports (an interruption too) and evaluates
        from render3d.apps.cli import EXIT_INTERRUPTED
        from render3d.interruption import FitInterrupted

        try:
            _fit(args, method, seed, config, on_step=None)
        except FitInterrupted:
            return EXIT_INTERRUPTED
        return 0
    _note_busy_machine()
    viewer = _fit_viewer(args) if args.view else None
    try:
        scene = _fit(args, method, seed, config, on_step=None if viewer is None else viewer.on_step)
        summary = scene.train_summary
        processes = f" on {parallel.world_size} processes" if parallel.world_size > 1 else ""
        _echo(f"fitted {method} in {summary['seconds']:.1f} s{processes}; run directory: {args.out}")
        if split is not None:
            _report_evaluation(scene, args.data, split, progress=not args.quiet)
    except BaseException:
        if viewer is not None:
            viewer.close()
        raise
    if viewer is not None:
        from render3d.apps.view import serve_until_stopped

        _echo(f"the viewer keeps showing the fitted scene at {viewer.url} (Ctrl-C to stop)")
        serve_until_stopped(viewer)
    return 0


def _video_capture(args: argparse.Namespace, seed: int):
    """``args.data``, or for a video the COLMAP scene of its frames made in ``RUN/capture``
    (after the run folder was checked, so a refused ``--out`` costs no decoding)."""
    from render3d import rundir
    from render3d.data.video_capture import MIN_FRAMES, is_video_input
    from render3d.training import video_capture

    if args.frames is not None and not is_video_input(args.data):
        raise ConfigError(f"--frames chooses the frames of a video; {args.data} is not one")
    if args.frames is not None and args.frames < MIN_FRAMES:
        raise ConfigError(f"--frames: a capture needs at least {MIN_FRAMES} frames, got {args.frames}")
    run_dir = rundir.check_output_dir(Path(args.out), overwrite=args.overwrite, resume=args.resume)
    return video_capture(args.data, run_dir, seed=seed, progress=not args.quiet, n_frames=args.frames)


def _fit_viewer(args: argparse.Namespace):
    from render3d.apps.view import fit_viewer

    return fit_viewer(args.data, host=args.host, port=args.port, echo=_echo)


def _fit(args: argparse.Namespace, method: str, seed: int, config: dict, on_step) -> "render3d.Scene":
    return render3d.Scene.fit(
        args.data,
        method=method,
        steps=args.steps,
        seed=seed,
        device=args.device,
        config=config,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        checkpoint_minutes=args.checkpoint_minutes,
        overwrite=args.overwrite,
        resume=args.resume,
        preset=args.preset,
        time_budget=args.time,
        progress=not args.quiet,
        on_step=on_step,
        share_cpu=True,
        downscale=args.downscale,
    )


def _fit_options(args: argparse.Namespace) -> tuple[str, int, dict]:
    """Method, seed and config overrides of ``fit``; with ``--resume`` those not given on the
    command line are the run's own (steps are part of its config)."""
    method, seed, config = args.method, args.seed, dict(args.config)
    recorded = rundir.read_json(Path(args.out) / rundir.CONFIG) if args.resume else {}
    if recorded:
        method = method or recorded.get("method")
        seed = recorded.get("seed") if seed is None else seed
        if method == recorded.get("method"):
            config = dict(recorded.get("config") or {}) | config
    return method or _default_method(Path(args.data)), 0 if seed is None else seed, config


def _default_method(data: Path) -> str:
    """``fit``'s method when none is named: 3D Gaussian Splatting for posed images (the best
    quality per minute on a CPU and a GPU alike), a signed distance field for shapes."""
    from render3d.data.shapes import is_shape_path

    return "sdf" if is_shape_path(data) else "3dgs"


def _evaluation_split(data: Path) -> str | None:
    """The split that ``fit`` evaluates after fitting, decided before it: test, else val, else
    none (with a note, so that a long fit does not end in an error)."""
    render3d.detect_format(data)  # a missing or unknown folder is refused here, naming it
    reasons = []
    for split in ("test", "val"):
        try:
            render3d.load_dataset(data, split=split, max_images=1, images=False)
        except DataError as error:
            reasons.append(str(error))
            continue
        if reasons:
            _echo(f"note: no test split ({reasons[0]}); the fit will be evaluated on {split}")
        return split
    _echo(f"note: {data} has neither a test nor a val split; the fit will not be evaluated")
    return None


def _report_evaluation(scene: "render3d.Scene", data, split: str, progress: bool) -> dict:
    result = scene.evaluate(data, split, progress=progress)
    _echo(_evaluation_line(scene, result))
    return result


def _evaluation_line(scene: "render3d.Scene", result: dict) -> str:
    """The line that sums up :meth:`Scene.evaluate`'s ``result``; a fit with per-image appearance
    also gives the appearance-matched PSNR (its test images have exposures of their own)."""
    mean = result["mean"]
    line = f"{result['split']}: PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f}"
    if "mask_iou" in mean:
        line += f", mask IoU {mean['mask_iou']:.3f}"
    line += f" over {len(result['images'])} images"
    if scene.method.config.get("appearance", "off") != "off":
        line += (f"; {mean['psnr_appearance']:.2f} dB on the right halves with each image's appearance matched "
                 "on its left half")
    return line


def _orbit_cameras(data: Path, n_frames: int, downscale: int) -> "render3d.Cameras":
    from render3d.camera_paths import orbit_around

    train = render3d.load_dataset(data, split="train", images=False, downscale=downscale)
    return orbit_around(train.cameras, n_frames, train.center)


# Orbit around a scene without an image dataset (a splat file, a shape run): horizontal field of view, elevation.
_BOX_ORBIT_FOV_DEG = 50.0
_BOX_ORBIT_ELEVATION_DEG = 20.0


def _box_orbit_cameras(scene: "render3d.Scene", n_frames: int) -> "render3d.Cameras":
    """``n_frames`` cameras orbiting the scene's aabb (z up), far enough for its bounding
    sphere to fit the field of view, at the scene's image size."""
    import math

    from render3d.camera_paths import orbit
    from render3d.cameras import intrinsics_from_fov

    info = scene.method.scene_info
    box = info.aabb_tensor()
    center = box.mean(dim=0)
    half_diagonal = float((box[1] - box[0]).norm()) / 2
    fov = math.radians(_BOX_ORBIT_FOV_DEG)
    radius = max(half_diagonal / math.sin(fov / 2), 1e-3)
    K = intrinsics_from_fov(fov, info.width, info.height)
    return orbit(center, radius, n_frames, K, info.width, info.height, _BOX_ORBIT_ELEVATION_DEG)


def _default_render_folder(scene: "render3d.Scene", run: str, view: str) -> Path:
    if scene.run_dir is None:  # a splat file: a folder beside it
        return Path(run).with_name(f"{Path(run).stem}_renders") / view
    return Path(run) / RENDERS / view


def cmd_render(args: argparse.Namespace) -> int:
    from render3d.body.poses import read_motion, read_pose
    from render3d.io.images import save_image

    if args.video is not None:
        _check_video_path(args.video)
        check_writable(args.video, "--video")
    if args.out is not None:
        check_writable(args.out, "--out", folder=True)
    scene = _load_scene(args)
    pose = None if args.pose is None else read_pose(args.pose, scene.posable_body("--pose"))
    motion, motion_fps = (None, 30) if args.motion is None else read_motion(args.motion, scene.posable_body("--motion"))
    fps = args.fps or motion_fps
    downscale = scene.downscale if args.downscale is None else args.downscale
    if args.orbit:
        view = "orbit"
        if args.data is None and (scene.data_root is None or scene.method.data_kind != "images"):
            cameras = _box_orbit_cameras(scene, args.orbit)
        else:
            cameras = _orbit_cameras(_data_for(scene, args.data), args.orbit, downscale)
    else:
        view = args.split or "test"
        dataset = render3d.load_dataset(_data_for(scene, args.data), split=view, downscale=downscale,
                                        images=scene.method.conditions_read_images)
        cameras = dataset.cameras
    if motion is not None:
        view = "motion"
        frames = _render_motion(scene, cameras if args.orbit else cameras[:1], motion, quiet=args.quiet)
    elif pose is None and view != "orbit":  # each view as its image was taken (an avatar: in its frame's pose)
        frames = scene.render_dataset(dataset, progress=not args.quiet)["rgb"].clamp(0, 1)
    else:
        frames = scene.render(cameras, pose=pose, progress=not args.quiet)["rgb"].clamp(0, 1)
    names = [f"{view}_{index:04d}.png" for index in range(len(frames))]
    out = Path(args.out) if args.out else check_writable(_default_render_folder(scene, args.run, view),
                                                         "render folder", folder=True)
    for name, frame in zip(names, frames):
        save_image(out / name, frame)
    _echo(f"wrote {len(names)} frames to {out}")
    if args.video is not None:
        from render3d.io.video import save_video

        save_video(args.video, frames, fps=fps)
        _echo(f"wrote video {args.video}")
    return 0


def _render_motion(scene: "render3d.Scene", cameras, poses: list, *, quiet: bool):
    """``[T, H, W, 3]``: pose ``t`` seen by camera ``t mod C`` (one camera: a still view; an
    orbit of ``C`` cameras: a turn every ``C`` frames)."""
    import torch

    from render3d.progress import progress_bar

    frames = []
    with progress_bar(len(poses), "render", enabled=not quiet, unit="frame") as bar:
        for index, pose in enumerate(poses):
            camera = cameras[index % len(cameras)]
            frames.append(scene.render(camera, pose=pose)["rgb"][0].clamp(0, 1))
            bar.update(1)
    return torch.stack(frames)


def _check_video_path(path: str) -> None:
    if Path(path).suffix.lower() not in (".mp4", ".gif"):
        raise ConfigError(f"--video: {path!r} must end in .mp4 or .gif")


def cmd_eval(args: argparse.Namespace) -> int:
    if args.mesh_gt is not None:
        return _evaluate_against_mesh(args)
    if is_splat_file(args.run):  # rendered over the dataset's background, as a fitted run is
        if not Path(args.run).is_file():
            raise DataError(f"{args.run}: splat file does not exist")
        if args.data is None:
            raise ConfigError("a splat file has no dataset; pass --data DIR")
        dataset = render3d.load_dataset(args.data, split=args.split, downscale=args.downscale or 1)
        scene = render3d.Scene.load(args.run, device=args.device, background=dataset.background)
    else:
        scene = _load_scene(args)
        downscale = scene.downscale if args.downscale is None else args.downscale
        dataset = render3d.load_dataset(_data_for(scene, args.data), split=args.split, downscale=downscale)
    result = scene.evaluate(dataset, args.split, progress=not (args.quiet or args.json))
    if dataset.mesh_path is not None and scene.method.can_mesh:
        from render3d.mesh import load_mesh
        from render3d.metrics import mesh_metrics

        mesh = scene.extract_mesh(resolution=args.resolution)
        result["mesh"] = mesh_metrics(mesh, load_mesh(dataset.mesh_path))
        scene.record_metrics("mesh", result["mesh"])
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _echo(_evaluation_line(scene, result))
    for key, value in result.get("mesh", {}).items():
        _echo(f"mesh {key}: {value:.5g}" if isinstance(value, float) else f"mesh {key}: {value}")
    return 0


def _evaluate_against_mesh(args: argparse.Namespace) -> int:
    """``eval --mesh-gt``: Occupancy Networks' metrics of the run's mesh against a mesh file, both in
    the input's (world) coordinates."""
    from render3d.data.shapes import load_shapes
    from render3d.metrics import shape_metrics

    truth = load_shapes(args.mesh_gt)
    if truth.kind != "mesh":
        raise ConfigError(f"--mesh-gt: {args.mesh_gt} must be one mesh file, not a {truth.kind}")
    scene = _load_scene(args)
    if not scene.method.can_mesh:
        raise ConfigError(f"--mesh-gt: method {scene.method.name!r} cannot extract a mesh")
    metrics = shape_metrics(scene.extract_mesh(resolution=args.resolution), truth.world_mesh(0))
    scene.record_metrics("mesh", metrics)
    if args.json:
        print(json.dumps({"mesh": metrics}, indent=2))
        return 0
    _echo(f"mesh vs {args.mesh_gt}: IoU {metrics['iou']:.4f}, Chamfer-L1 {metrics['chamfer_l1']:.5g}"
          f" ({metrics['chamfer_l1_fraction']:.3%} of the bbox diagonal), normal consistency"
          f" {metrics['normal_consistency']:.4f}, F@1% {metrics['fscore@1%']:.4f}")
    for key, value in metrics.items():
        _echo(f"mesh {key}: {value:.5g}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from render3d.body.poses import read_pose
    from render3d.mesh import MESH_EXTENSIONS, export_mesh

    if args.mesh is None and args.splat is None and args.body is None:
        raise ConfigError("nothing to export: give --splat FILE.ply|FILE.glb, --mesh FILE and/or --body FILE.glb")
    if args.mesh is not None and Path(args.mesh).suffix.lower() not in MESH_EXTENSIONS:
        raise ConfigError(f"--mesh: {args.mesh!r} must end in {', '.join(MESH_EXTENSIONS)}")
    if args.splat is not None and Path(args.splat).suffix.lower() not in SPLAT_SUFFIXES:
        raise ConfigError(f"--splat: {args.splat!r} must end in .ply (the 3DGS splat PLY) or .glb "
                          "(glTF with KHR_gaussian_splatting)")
    box = None if args.box is None else [args.box[:3], args.box[3:]]
    if box is not None and not all(high > low for low, high in zip(*box)):
        raise ConfigError(f"--box: each maximum must exceed its minimum, got {args.box}")
    if args.body is not None and Path(args.body).suffix.lower() != ".glb":
        raise ConfigError(f"--body: {args.body!r} must end in .glb (a skinned glTF)")
    body_gaussians = None if args.body is None else _body_gaussians_path(Path(args.body))
    for argument, path in (("--mesh", args.mesh), ("--splat", args.splat), ("--body", args.body),
                           ("--body", body_gaussians)):
        if path is not None:
            check_writable(path, argument)
    scene = _load_scene(args)
    pose = None if args.pose is None else read_pose(args.pose, scene.posable_body("--pose"))
    if args.body is not None:
        scene.posable_body("--body")
    # Check every request before writing anything, so a refused one leaves no partial export.
    if args.splat is not None and not scene.can_export_splat:
        raise ConfigError(f"--splat: method {scene.method.name!r} has no Gaussians to export (use --mesh)")
    if args.mesh is not None and not scene.method.can_mesh:
        raise ConfigError(f"--mesh: method {scene.method.name!r} cannot extract a mesh")
    # The mesh first: it is the one that can still be refused (e.g. empty at this level).
    if args.mesh is not None:
        mesh = scene.extract_mesh(resolution=args.resolution, level=args.level, bbox=box, keep_all=args.keep_all)
        export_mesh(mesh, args.mesh)
        pieces = mesh.metadata["pieces"]
        dropped = pieces["found"] - pieces["kept"]
        _echo(f"wrote {args.mesh}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces in {pieces['kept']} piece(s)"
              + (f" ({dropped} small floating pieces dropped; --keep-all keeps them)" if dropped else ""))
    if args.splat is not None:
        size = scene.export_splat(args.splat, pose=pose).stat().st_size
        kind = "glTF KHR_gaussian_splatting, +z up turned to glTF's +y" if args.splat.lower().endswith(".glb") \
            else "3DGS splat PLY"
        _echo(f"wrote {args.splat}: {kind}, {size / 1e6:.3g} MB")
    if args.body is not None:
        _export_body(scene, Path(args.body), body_gaussians)
        _echo(f"wrote {args.body} (skinned glTF of the fitted body) and {body_gaussians} (its Gaussians in the rest pose)")
    return 0


def _body_gaussians_path(body: Path) -> Path:
    """Where ``export --body FILE.glb`` puts the Gaussians: ``FILE.gaussians.ply``."""
    return body.with_suffix(".gaussians.ply")


def _export_body(scene: "render3d.Scene", path: Path, gaussians: Path) -> None:
    """An avatar's fitted body as a skinned glTF at ``path`` (its shape, the rest pose) and its
    Gaussians in the rest pose as a 3DGS PLY at ``gaussians``."""
    import copy

    import torch

    from render3d.body.gltf import write_skinned_glb
    from render3d.body.poses import BodyPose

    body = copy.deepcopy(scene.posable_body("--body")).cpu()  # a copy: the scene's stays on its device
    rest = BodyPose.rest(body.n_joints)
    scene.export_splat(gaussians, pose=rest)
    write_skinned_glb(path, body, scene.method.betas.detach().cpu(), rest.pose[None], torch.zeros(1, 3))


def cmd_view(args: argparse.Namespace) -> int:
    from render3d.apps.view import open_viewable, open_viewer, serve_until_stopped

    viewable = open_viewable(args.path, device=args.device, background=args.background)
    serve_until_stopped(open_viewer(viewable, host=args.host, port=args.port, resolution=args.resolution, echo=_echo))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    if args.data is None:
        _print_installation()
    else:
        _print_dataset(Path(args.data))
    return 0


def _print_installation() -> None:
    import torch

    from render3d.methods import available_methods
    from render3d.ops._backend import requested_backend, triton_available

    _echo(f"render3d {render3d.__version__} (torch {torch.__version__})")
    _echo(f"CUDA: {'yes, ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    _echo(f"Triton: {'installed' if triton_available() else 'not installed'}; RENDER3D_BACKEND={requested_backend()}")
    methods = available_methods()
    if not methods:
        _echo("methods: none installed yet")
    for name, cls in methods.items():
        _echo(f"method {name}: {cls.description}")


def _print_dataset(path: Path) -> None:
    from render3d.data.images import image_has_alpha
    from render3d.data.shapes import SHAPE_EXTENSIONS, is_shape_path, load_shapes

    if is_shape_path(path) or path.suffix.lower() in SHAPE_EXTENSIONS:  # a missing shape file: say so
        for line in load_shapes(path).describe():
            _echo(line)
        return
    from render3d.data.video_capture import describe_videos, is_video_input

    if is_video_input(path):
        for line in describe_videos(path):
            _echo(line)
        return
    fmt = render3d.detect_format(path)
    _echo(f"{path}: {fmt} dataset")
    splits: dict[str, "render3d.Dataset | DataError"] = {}
    for split in ("train", "val", "test"):
        try:
            splits[split] = render3d.load_dataset(path, split=split, images=False)
        except DataError as error:
            if split == "train":
                raise
            splits[split] = error
    train = splits["train"]
    alpha = any(image_has_alpha(train.root / name) for name in train.image_names)
    K = train.cameras.K[0]
    lo, hi = train.aabb.tolist()
    _echo(f"  images: {train.width}x{train.height}, fx {float(K[0, 0]):.1f} fy {float(K[1, 1]):.1f}"
          f" cx {float(K[0, 2]):.1f} cy {float(K[1, 2]):.1f}; alpha: {'yes' if alpha else 'no'}")
    _echo(f"  bounds: aabb {[round(v, 3) for v in lo]} .. {[round(v, 3) for v in hi]},"
          f" near {train.near:.3g}, far {train.far:.3g}")
    if train.points is not None:
        _echo(f"  sparse points: {len(train.points)}")
    if train.mesh_path is not None:
        _echo(f"  ground-truth mesh: {train.mesh_path}")
    test = splits["test"]
    for split, dataset in splits.items():
        if isinstance(dataset, DataError):
            _echo(f"  {split}: none ({dataset})")
        elif split == "val" and not isinstance(test, DataError) and dataset.image_names == test.image_names:
            _echo(f"  val: the same {len(dataset)} images as test (this dataset has no val split of its own)")
        else:
            _echo(f"  {split}: {len(dataset)} images")


def cmd_bench(args: argparse.Namespace) -> int:
    from render3d.benchmarks.registry import BENCHMARKS, run_benchmarks

    if args.list:
        for name, bench in BENCHMARKS.items():
            _echo(f"{name}: {bench.description}")
        return 0
    if args.json:
        check_writable(args.json, "--json")
    if args.peers:
        return _bench_peers(args)
    if args.blender or args.fit_seconds is not None:
        raise ConfigError("--blender and --fit-seconds belong to --peers")
    results = run_benchmarks(args.names, device=args.device, quick=args.quick)
    if args.json:
        from render3d.io.atomic import atomic_write_json

        atomic_write_json(args.json, results)
        _echo(f"wrote {args.json}")
    return 0


def _bench_peers(args: argparse.Namespace) -> int:
    """``render3d bench --peers``: the table on stdout; with ``--json F``, F and F's ``.md`` table."""
    from render3d.benchmarks.registry import resolve_bench_device
    from render3d.benchmarks.peers import markdown, run_peer_benchmark

    if args.names:
        raise ConfigError(f"--peers runs its own suite; drop the benchmark names ({' '.join(args.names)})")
    table_path = None if not args.json else str(Path(args.json).with_suffix(".md"))
    if table_path is not None and table_path == args.json:
        raise ConfigError(f"--json {args.json}: the Markdown table goes next to it in a .md file; name the JSON file .json")
    if table_path:
        check_writable(table_path, "--json")
    result = run_peer_benchmark(resolve_bench_device(args.device), quick=args.quick,
                                blender=None if args.blender is None else Path(args.blender),
                                fit_seconds=args.fit_seconds)
    table = markdown(result)
    _echo(table)
    if args.json:
        from render3d.io.atomic import atomic_write_json, atomic_write_text

        atomic_write_json(args.json, result)
        atomic_write_text(table_path, table)
        _echo(f"wrote {args.json} and {table_path}")
    return 0


def cmd_check_kernels(args: argparse.Namespace) -> int:
    from render3d.apps.check_kernels import cmd_check_kernels

    return cmd_check_kernels(args)


def cmd_plot(args: argparse.Namespace) -> int:
    from render3d.apps.plot import cmd_plot

    return cmd_plot(args)


def demo_data_path() -> Path:
    """The embedded demo scene (NeRF-synthetic layout), shipped as package data."""
    from importlib.resources import files

    path = Path(str(files("render3d.assets") / "demo"))
    if not (path / "transforms_train.json").is_file():
        raise ConfigError(f"the demo scene is missing from this installation (looked in {path})")
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    from render3d.methods import available_methods, get_method

    data = demo_data_path()
    methods = available_methods()
    method = args.method or next((name for name in DEMO_PREFERENCE if name in methods), None)
    if method is None:
        _echo(f"render3d demo: no rendering method is installed yet, so there is nothing to fit.\n"
              f"The demo scene is at {data}; `render3d info {data}` describes it.")
        return 0
    cls = get_method(method)
    out = check_writable(args.out, "--out", folder=True)
    # The demo's settings are a preset's when one matches (on a CPU, then, a time budget); else its own config.
    preset = next((name for name, values in cls.presets.items() if values == cls.demo_config), None)
    config, steps = {}, args.steps
    if preset is None:
        config = {key: value for key, value in cls.demo_config.items() if key != "steps"}
        steps = cls.demo_config.get("steps") if steps is None else steps
    _echo(f"render3d demo: fitting {method} to {data}")
    _note_busy_machine()
    # The demo is reproducible: running it again replaces the earlier demo run in the folder.
    scene = render3d.Scene.fit(data, method=method, steps=steps, device=args.device, config=config, preset=preset,
                               out=out / "run", overwrite=True, progress=not args.quiet, share_cpu=True)
    _report_evaluation(scene, data, "test", progress=not args.quiet)
    frames = scene.render(_orbit_cameras(data, 60, scene.downscale), progress=not args.quiet)["rgb"].clamp(0, 1)
    video = _write_demo_video(out, frames)
    written = [f"run directory: {out / 'run'}", f"novel-view video: {video}"]
    if scene.can_export_splat:
        written.append(f"3DGS splat: {scene.export_splat(out / 'splat.ply')}")
    if scene.method.can_mesh:
        from render3d.mesh import export_mesh

        mesh_path = out / "mesh.ply"
        export_mesh(scene.extract_mesh(resolution=128), mesh_path)
        written.append(f"mesh: {mesh_path}")
    _echo("render3d demo: done\n  " + "\n  ".join(written))
    return 0


def _write_demo_video(out: Path, frames) -> Path:
    from render3d.io.video import save_video

    try:
        path = out / "orbit.mp4"
        save_video(path, frames, fps=30)
    except ConfigError as error:  # no ffmpeg plugin: a GIF needs none
        print(f"render3d demo: {error}; writing a GIF instead", file=sys.stderr)
        path = out / "orbit.gif"
        save_video(path, frames, fps=30)
    return path
