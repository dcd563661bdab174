"""The ``render3d`` command line: argument parsing and the one-line error contract.

Every command reports bad arguments or bad data on one line and exits with status 2;
the work itself lives in :mod:`render3d.apps.commands`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings

from render3d.errors import DataWarning, Render3DError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what the shell shows for a writer whose reader went away


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage dump) and exits with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``, refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _minutes(text: str) -> float:
    """An argparse type: a finite number of minutes >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def parse_config_item(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it is JSON (numbers, booleans, lists)."""
    import json

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def parse_rgb(text: str) -> tuple[float, float, float]:
    """``R,G,B`` with each value in [0, 1], e.g. ``1,1,1`` for white."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= value <= 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not R,G,B with values in [0, 1]")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="render3d",
        description="Fit, render, evaluate and mesh 3D scenes (NeRF, 3D Gaussian Splatting, DVR, implicit surfaces).",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    fit = commands.add_parser("fit", help="fit a scene representation to a dataset folder")
    fit.add_argument("data", help="dataset folder (NeRF-synthetic, nerfstudio, COLMAP or a folder of photos), "
                                  "or a video file or folder of videos (frames and poses kept in RUN/capture)")
    fit.add_argument("--method", help="representation to fit (default: 3dgs for images, sdf for a mesh or point"
                                      " cloud; see `render3d info`)")
    fit.add_argument("--out", required=True, help="run directory to create (an empty or new folder)")
    fit.add_argument("--preset", choices=["fast", "balanced", "full"],
                     help="the method's setting: fast (a preview), balanced, full (the paper recipe); default"
                          " full on a GPU, balanced on a CPU, where fast and balanced are time budgets (3dgs and"
                          " nerf: 3.5 and 12 min, dvr: 1 and 5 min of fitting) unless --steps fixes the count")
    fit.add_argument("--time", metavar="DURATION",
                     help="fit within this wall-clock time, e.g. 90s, 10m, 1.5h: steps and schedule are set from"
                          " the measured speed")
    fit.add_argument("--steps", type=_non_negative_int, help="optimisation steps (default: the preset's)")
    fit.add_argument("--frames", type=_positive_int, metavar="N",
                     help="for a video: keep N frames, the sharpest of N equal stretches of time (default 100, or"
                          " the count of the capture the run already has)")
    fit.add_argument("--downscale", type=_positive_int, metavar="N",
                     help="train on images shrunk N times (1: full size); default: large images are shrunk to suit"
                          " the time budget (a longer side of 480 px for 12 minutes on a CPU, 1600 px without a"
                          " budget); render and eval use the run's scale unless given --downscale")
    fit.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    fit.add_argument("--seed", type=int, help="random seed (default 0)")
    fit.add_argument("--config", type=parse_config_item, action="append", default=[], metavar="KEY=VALUE",
                     help="override a method option; repeatable")
    existing = fit.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in --out from its last checkpoint (method, steps, config and seed"
                               " default to the run's)")
    fit.add_argument("--checkpoint-every", type=_positive_int, help="also checkpoint every N steps")
    fit.add_argument("--checkpoint-minutes", type=_minutes, default=5.0, metavar="M",
                     help="checkpoint every M minutes (default 5; 0: only at the end and on Ctrl-C)")
    fit.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation after fitting")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.add_argument("--view", action="store_true",
                     help="show the scene in the browser while it trains, and after (Ctrl-C to stop; needs the viewer extra)")
    fit.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                     help="train data-parallel on N processes of this machine (gloo on CPU, one GPU each with CUDA;"
                          " as torchrun --nproc_per_node N -m render3d fit ...); 3dgs needs batch_views divisible by N")
    _add_server_arguments(fit)

    render = commands.add_parser("render", help="render a fitted scene's test views or an orbit")
    render.add_argument("run", help="run directory written by `render3d fit`, or a splat file (.ply, .glb)")
    views = render.add_mutually_exclusive_group()
    views.add_argument("--split", choices=["train", "val", "test"], help="render the cameras of this split (default test)")
    views.add_argument("--orbit", type=_positive_int, metavar="N", help="render N frames orbiting the scene")
    render.add_argument("--out", help="folder for the PNG frames (default RUN/renders/SPLIT or RUN/renders/orbit;"
                                      " FILE_renders/... next to a .ply)")
    render.add_argument("--video", help="also write the frames as a video (.mp4 or .gif)")
    render.add_argument("--fps", type=_positive_int, help="video frame rate (default 30; a --motion's own)")
    render.add_argument("--data", help="dataset folder (default: the one the run was fit on)")
    render.add_argument("--downscale", type=_positive_int, metavar="N",
                        help="render the dataset's cameras shrunk N times (default: the scale the run was fit at;"
                             " 1: the images' full size)")
    render.add_argument("--background", type=parse_rgb, metavar="R,G,B",
                        help="background of a splat file in [0,1] (default 0,0,0; a run keeps its own)")
    body = render.add_mutually_exclusive_group()
    body.add_argument("--pose", metavar="POSE.json",
                      help="an avatar in this body pose (joint rotations by name, or pose_axis_angle; see "
                           "render3d.body.poses)")
    body.add_argument("--motion", metavar="MOTION.json",
                      help="an avatar animated through these poses ({\"fps\", \"frames\": [POSE, ...]}), one frame per "
                           "pose seen by the split's first camera (with --orbit N: turning once every N frames)")
    render.add_argument("--device", help="cpu, cuda, cuda:N")
    render.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("eval", help="PSNR/SSIM on a split; mesh metrics when the data has a ground-truth mesh")
    evaluate.add_argument("run", help="run directory written by `render3d fit`, or a splat file (.ply, .glb; needs --data;"
                          " rendered over the dataset's background)")
    evaluate.add_argument("--data", help="dataset folder (default: the one the run was fit on)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate (default test)")
    evaluate.add_argument("--downscale", type=_positive_int, metavar="N",
                          help="evaluate on images shrunk N times (default: the scale the run was fit at; 1: full size)")
    evaluate.add_argument("--resolution", type=_positive_int, default=256, help="marching-cubes resolution for mesh metrics")
    evaluate.add_argument("--mesh-gt", metavar="MESH", help="ground-truth mesh file: report IoU, Chamfer-L1, normal consistency"
                          " and F-score of the run's mesh against it (implicit surfaces) instead of PSNR/SSIM")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.add_argument("--device", help="cpu, cuda, cuda:N")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")

    export = commands.add_parser("export", help="export a fitted scene as a mesh and/or a splat (3DGS PLY or glTF)")
    export.add_argument("run", help="run directory written by `render3d fit`, or a splat file (.ply, .glb)")
    export.add_argument("--mesh", help="output mesh file (.ply, .obj or .glb)")
    export.add_argument("--splat", metavar="FILE.ply|FILE.glb",
                        help="output the Gaussians (Gaussian methods such as 3dgs): .ply is the standard 3DGS PLY, "
                             ".glb is glTF with KHR_gaussian_splatting (+z up turned to glTF's +y)")
    export.add_argument("--pose", metavar="POSE.json", help="an avatar's --splat posed in this body pose (default its first frame)")
    export.add_argument("--body", metavar="FILE.glb",
                        help="an avatar's fitted body as a skinned glTF, with its Gaussians in the rest pose beside it "
                             "(FILE.gaussians.ply)")
    export.add_argument("--resolution", type=_positive_int, default=256, help="marching-cubes cells per axis (default 256)")
    export.add_argument("--level", type=float, help="iso-level (default: the method's)")
    export.add_argument("--box", type=float, nargs=6, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                        help="mesh only this world box (default: for a capture, the box around the point its "
                             "cameras look at, the object without the room; otherwise the scene's box)")
    export.add_argument("--keep-all", action="store_true",
                        help="keep every piece of the mesh (default: drop floaters under 2%% of the largest piece's area)")
    export.add_argument("--device", help="cpu, cuda, cuda:N")

    view = commands.add_parser("view", help="serve an interactive viewer of a run, a splat file or a mesh in the browser")
    view.add_argument("path", help="run directory, splat file (3DGS .ply, KHR_gaussian_splatting .glb), or mesh file (.ply with faces, .obj, .glb)")
    view.add_argument("--resolution", type=_positive_int, default=512,
                      help="pixels of the longer side of a still render (default 512; a slider changes it)")
    view.add_argument("--background", type=parse_rgb, metavar="R,G,B",
                      help="background of a splat file in [0,1] (default 0,0,0; a run keeps its own)")
    view.add_argument("--device", help="cpu, cuda, cuda:N")
    _add_server_arguments(view)

    info = commands.add_parser("info", help="describe a dataset folder or a shape, or the installation when none is given")
    info.add_argument("data", nargs="?", help="dataset folder, mesh or point-cloud file, folder of meshes, or video")
    for command in (fit, render, evaluate, info):
        command.add_argument("--strict", action="store_true",
                             help="refuse data that loads only in part (e.g. frames whose image file is missing)"
                                  " instead of noting it in one line")

    bench = commands.add_parser("bench", help="run benchmarks and print a table")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all); see --list")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    bench.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.add_argument("--peers", action="store_true",
                       help="the GPU suite: kernels vs references, vs gsplat/nerfacc/tiny-cuda-nn where installed, "
                            "time-to-31-dB fits (with --json F also writes F's .md table)")
    bench.add_argument("--blender", metavar="DIR", help="with --peers: the 400x400 Blender scene "
                       "(default: made once with blender when it is on the PATH)")
    bench.add_argument("--fit-seconds", type=float, metavar="S",
                       help="with --peers: stop a fit that has not reached 31 dB after S seconds (default 60)")

    check_kernels = commands.add_parser("check-kernels", help="compile every Triton kernel variant for real GPUs (no GPU needed)")
    from render3d.apps.check_kernels import add_arguments as add_check_kernels_arguments

    add_check_kernels_arguments(check_kernels, _positive_int)

    plot = commands.add_parser("plot", help="draw training curves (PSNR, loss, counts, learning rates) of runs as a PNG")
    from render3d.apps.plot import add_arguments as add_plot_arguments

    add_plot_arguments(plot)

    from render3d.apps.body_commands import add_body_commands

    add_body_commands(commands, _positive_int)

    demo = commands.add_parser("demo", help="fit the embedded demo scene, render a novel-view video and export a mesh")
    demo.add_argument("--out", default="render3d-demo", help="output folder (default ./render3d-demo)")
    demo.add_argument("--method", help="representation (default: the best installed one)")
    demo.add_argument("--steps", type=_non_negative_int, help="optimisation steps (default: the method's demo setting)")
    demo.add_argument("--device", help="cpu, cuda, cuda:N")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--port`` and ``--host`` of the browser viewer (``view``, ``fit --view``)."""
    parser.add_argument("--port", type=_port, default=8080, help="viewer port (default 8080; the next free one if taken)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="viewer address (default 127.0.0.1, this machine only; 0.0.0.0 serves the network)")


def _version() -> str:
    from render3d import __version__

    return f"render3d {__version__}"


# Commands whose fit sets torch's thread count to the cores other work leaves free, all along.
THREAD_SHARING_COMMANDS = ("fit", "demo")


def omp_wait_policy(environ, busy_cores: float, cores: int) -> str | None:
    """The ``OMP_WAIT_POLICY`` to set before torch starts, or None to leave OpenMP's default.

    Measured on 2 cores (benchmarks/RESULTS.md, "OpenMP wait policy"): ``PASSIVE`` makes a fit
    that has the cores to itself 1.7x slower, but two fits sharing them 2.9x faster, because
    spinning threads no longer steal each other's cores. So it is set only when other work
    already keeps every core busy (``busy_cores >= cores``, see :func:`busy_cores`), and never
    over a value the user chose.
    """
    if "OMP_WAIT_POLICY" in environ:
        return None
    return "PASSIVE" if busy_cores >= cores else None


def busy_cores(proc_loadavg: str = "/proc/loadavg", samples: int = 3, interval: float = 0.01) -> float:
    """How many cores other work keeps busy now: the 1-minute load average, capped by the
    most threads seen runnable besides this one in a few samples of ``/proc/loadavg``.

    The load average alone lags: a fit started right after another one ends would still see
    the old fit's load for a minute and take the slow policy. Where ``/proc/loadavg`` cannot
    be read (not Linux), the load average is used as it is. Below the core count no sample is
    taken (the cap could only lower it), so an idle machine's commands start without waiting.
    """
    load_average = os.getloadavg()[0]
    if load_average < (os.cpu_count() or 1):
        return load_average
    runnable = []
    for index in range(samples):
        try:
            with open(proc_loadavg) as handle:
                runnable.append(int(handle.read().split()[3].split("/")[0]) - 1)  # "R/T": minus ourselves
        except (OSError, IndexError, ValueError):
            return load_average
        if index + 1 < samples:
            time.sleep(interval)
    return min(load_average, max(runnable))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``render3d`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    # OpenMP reads its wait policy once, when torch loads it. A fit shares a busy machine by its
    # thread count instead (render3d.cpu_share), which it can take back when the cores are free.
    if "torch" not in sys.modules and args.command not in THREAD_SHARING_COMMANDS:
        policy = omp_wait_policy(os.environ, busy_cores(), os.cpu_count() or 1)
        if policy is not None:
            os.environ["OMP_WAIT_POLICY"] = policy
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader of our output went away (e.g. `render3d info | head -2`): stop quietly, and
        # point stdout at devnull so that the flush at exit does not fail again (Python's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace) -> int:
    from render3d.apps import commands
    from render3d.interruption import FitInterrupted

    try:
        with warnings.catch_warnings():  # the command's own way of showing data warnings, undone after it
            warnings.showwarning = _data_warnings_as_notes(warnings.showwarning)
            if getattr(args, "strict", False):
                warnings.simplefilter("error", DataWarning)
            handler = getattr(args, "handler", None) or getattr(commands, f"cmd_{args.command.replace('-', '_')}")
            return handler(args) or 0
    except (Render3DError, DataWarning) as error:  # a DataWarning raises under --strict
        _report(f"render3d {args.command}: error: {error}")
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except OSError as error:  # a write that the up-front checks could not foresee (disk full...)
        _report(f"render3d {args.command}: error: {_os_error_line(error)}")
        return EXIT_USAGE
    except FitInterrupted as stop:
        _report(f"render3d {args.command}: {_interrupted_line(args, stop)}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _report(f"render3d {args.command}: interrupted")
        return EXIT_INTERRUPTED


def _data_warnings_as_notes(show_others):
    """A ``warnings.showwarning`` that prints a :class:`DataWarning` as one ``note:`` line (rank 0
    only) and passes any other warning to ``show_others``."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            _report(f"render3d: note: {message}")
        else:
            show_others(message, category, filename, lineno, file, line)

    return show


def _report(line: str) -> None:
    """Print the command's one-line outcome on stderr, once per process group: every rank of a
    data-parallel fit (``torchrun``, ``--nproc``) meets the same bad input, and rank 0 says so."""
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr)


def _os_error_line(error: OSError) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    return reason if error.filename is None else f"{error.filename}: {reason}"


def _interrupted_line(args: argparse.Namespace, stop) -> str:
    if stop.step == stop.steps:
        return f"interrupted ({stop.signal_name}) after the last step; the run is complete in {stop.run_dir}"
    line = f"interrupted ({stop.signal_name}) at step {stop.step} of {stop.steps}; checkpoint: {stop.checkpoint}"
    if args.command == "fit":
        line += f"; continue with: render3d fit {shlex.quote(args.data)} --out {shlex.quote(args.out)} --resume"
    return line


if __name__ == "__main__":
    sys.exit(main())
