"""Body commands: ``render3d pose-body``, ``render3d fit-body`` and ``render3d export-body``.

- ``pose-body --model anny|procedural|PATH [--pose POSE.json] --out FILE [--render IMG]``:
  poses a model and writes the mesh (``.obj``/``.ply``; ``.glb`` writes a skinned glTF),
  and optionally a front view rendered as Gaussians bound to its triangles.
- ``fit-body KEYPOINTS.json --model ... --camera CAM.json [--image IMG] --out RUN``: fits the
  model to 2D keypoints and writes ``RUN/params.json``, ``RUN/body.<obj|ply|glb>`` and
  ``RUN/overlay.png``.
- ``export-body RUN --glb out.glb``: the fitted body of a run as a skinned glTF.

Pose files (JSON, :mod:`render3d.body.poses`): ``{"joint_name": [ax, ay, az], ...}`` (axis-angle
in the joint's rest frame, radians; other joints at rest), optionally with ``"transl": [x, y, z]``;
or a run's ``params.json``. Bad input is one line and exit status 2 (the CLI's contract).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

MESH_SUFFIXES = (".obj", ".ply", ".glb")
PARAMS = "params.json"
OVERLAY = "overlay.png"


def _parse_phenotype(items: list[str] | None) -> dict | None:
    from render3d.errors import ConfigError

    if not items:
        return None
    phenotype = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            phenotype[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--phenotype: expected KEY=NUMBER, got {item!r}")
    return phenotype


def add_body_commands(commands, positive_int) -> None:
    """Register the three body commands on the CLI's subparsers (each sets ``handler``)."""
    model_help = "body model: anny (free, needs the body extra), procedural, or an SMPL-family .npz/.pkl file"
    pose = commands.add_parser("pose-body", help="pose a body model and write its mesh (.obj, .ply, or skinned .glb)")
    pose.add_argument("--model", default="anny", help=model_help + " (default anny)")
    pose.add_argument("--phenotype", nargs="+", metavar="KEY=VALUE", help="anny phenotype values in [0,1], e.g. age=0.3")
    pose.add_argument("--pose", metavar="POSE.json", help="joint rotations {name: [ax, ay, az]} or a fit's params.json")
    pose.add_argument("--out", required=True, help="output mesh (.obj, .ply or .glb)")
    pose.add_argument("--render", metavar="IMAGE.png", help="also render a front view through the Gaussian rasterizer")
    pose.set_defaults(handler=cmd_pose_body)

    fit = commands.add_parser("fit-body", help="fit a body model to 2D keypoints (SMPLify-style)")
    fit.add_argument("keypoints", help="keypoint JSON: COCO-17 or OpenPose BODY_25 with confidences")
    fit.add_argument("--model", default="anny", help=model_help + " (default anny)")
    fit.add_argument("--phenotype", nargs="+", metavar="KEY=VALUE", help="anny phenotype to start from")
    fit.add_argument("--camera", required=True, help="intrinsics JSON: fx, fy, cx, cy, width, height (or K)")
    fit.add_argument("--image", help="image to draw the overlay on (default: a grey canvas)")
    fit.add_argument("--out", required=True, help="run directory for params.json, the mesh and overlay.png")
    fit.add_argument("--mesh-format", choices=[s[1:] for s in MESH_SUFFIXES], default="obj",
                     help="posed mesh format (default obj; glb is a skinned glTF)")
    fit.add_argument("--iterations", type=positive_int, default=15, help="L-BFGS iterations per stage (default 15)")
    fit.add_argument("--gmm", metavar="PRIOR.npz", help="optional GMM pose prior (means, covariances, weights)")
    fit.set_defaults(handler=cmd_fit_body)

    export = commands.add_parser("export-body", help="export a fit-body run as a skinned glTF (.glb)")
    export.add_argument("run", help="run directory written by render3d fit-body")
    export.add_argument("--glb", required=True, help="output .glb file")
    export.set_defaults(handler=cmd_export_body)


def _check_mesh_path(path: str, argument: str) -> Path:
    from render3d.errors import ConfigError
    from render3d.io.writable import check_writable

    out = Path(path)
    if out.suffix.lower() not in MESH_SUFFIXES:
        raise ConfigError(f"{argument}: {out} must end in .obj, .ply or .glb")
    return check_writable(out, argument)


def _write_mesh(path: Path, model, betas, pose, transl) -> None:
    import torch
    import trimesh

    from render3d.io.atomic import atomic_path

    if path.suffix.lower() == ".glb":
        from render3d.body.gltf import write_skinned_glb

        write_skinned_glb(path, model, betas, pose, transl)
        return
    with torch.no_grad():
        vertices = model(betas, pose, transl).vertices[0].numpy()
    mesh = trimesh.Trimesh(vertices, model.faces.numpy(), process=False)
    with atomic_path(path) as tmp:
        mesh.export(tmp)


def cmd_pose_body(args: argparse.Namespace) -> int:
    import torch

    from render3d.body import load_body_model
    from render3d.body.poses import BodyPose, read_pose

    out = _check_mesh_path(args.out, "--out")
    if args.render:
        from render3d.io.images import IMAGE_FORMATS
        from render3d.io.writable import check_writable

        if Path(args.render).suffix.lower() not in IMAGE_FORMATS:
            from render3d.errors import ConfigError

            raise ConfigError(f"--render: {args.render} must end in .png, .jpg or .jpeg")
        check_writable(args.render, "--render")
    model = load_body_model(args.model, _parse_phenotype(args.phenotype))
    body_pose = read_pose(args.pose, model) if args.pose else BodyPose.rest(model.n_joints)
    pose, transl = body_pose.pose[None], body_pose.transl[None]
    _write_mesh(out, model, torch.zeros(1, model.n_betas), pose, transl)
    if args.render:
        from render3d.body.render import BodyScene, front_camera
        from render3d.io.images import save_image

        scene = BodyScene(model, pose=pose, transl=transl)
        with torch.no_grad():
            camera = front_camera(scene.vertices()[0])
        save_image(args.render, scene.render(camera)["rgb"][0])
        print(f"wrote {args.render}")
    print(f"wrote {out} ({model.name}: {model.n_vertices} vertices, {model.n_joints} joints)")
    return 0


def cmd_fit_body(args: argparse.Namespace) -> int:
    import numpy as np

    from render3d.body import load_body_model
    from render3d.body.fitting import GMMPosePrior, fit_body
    from render3d.body.io import camera_json, draw_overlay, read_camera, read_keypoints
    from render3d.data.images import read_image
    from render3d.errors import DataError
    from render3d.io.atomic import atomic_write_json
    from render3d.io.images import save_image
    from render3d.io.writable import check_writable

    run = check_writable(args.out, "--out", folder=True)
    keypoints = read_keypoints(args.keypoints)
    camera = read_camera(args.camera)
    background = None
    if args.image:
        image = read_image(args.image)
        if image.shape[:2] != (camera.height, camera.width):
            raise DataError(f"{args.image}: image is {image.shape[1]}x{image.shape[0]}, the camera "
                            f"{camera.width}x{camera.height}")
        background = np.rint(image[..., :3] * 255).astype(np.uint8)
    gmm = None
    if args.gmm:
        gmm = _read_gmm(Path(args.gmm), GMMPosePrior)
    phenotype = _parse_phenotype(args.phenotype)
    model = load_body_model(args.model, phenotype)
    result = fit_body(model, keypoints, camera, iterations=args.iterations, gmm_prior=gmm,
                      progress=lambda stage, loss: print(f"stage {stage}: loss {loss:.1f}", file=sys.stderr))
    fitted_2d = camera.project(result.keypoints_3d[0]).numpy()
    overlay = draw_overlay(result.vertices[0].numpy(), model.faces.numpy(), camera, keypoints.points.numpy(),
                           keypoints.confidence.numpy(), fitted_2d, background)
    mesh_path = run / f"body.{args.mesh_format}"
    _write_mesh(mesh_path, model, result.betas, result.pose, result.transl)
    save_image(run / OVERLAY, overlay.astype(np.float32) / 255.0)
    labels = list(getattr(model, "shape_labels", ()))
    params = {
        "model": args.model, "phenotype": getattr(model, "phenotype", None), "shape_labels": labels,
        # anny's betas are phenotype offsets (linearised): the fitted phenotype, for reference.
        "fitted_phenotype": {label: model.phenotype[label] + float(beta)
                             for label, beta in zip(labels, result.betas[0].tolist())} if labels else None,
        "convention": keypoints.convention, "camera": camera_json(camera),
        "betas": result.betas[0].tolist(), "pose_axis_angle": result.pose[0].tolist(),
        "transl": result.transl[0].tolist(), "joint_names": list(model.joint_names),
        "reprojection_error_px": result.reprojection_error_px, "seconds": result.seconds,
        "mesh": mesh_path.name, "overlay": OVERLAY,
    }
    atomic_write_json(run / PARAMS, params)
    print(f"fit {model.name} to {args.keypoints}: mean reprojection error {result.reprojection_error_px:.2f} px "
          f"in {result.seconds:.1f} s; wrote {run}")
    return 0


def _read_gmm(path: Path, prior_class):
    import numpy as np

    from render3d.errors import DataError

    if not path.is_file():
        raise DataError(f"{path}: GMM prior file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return prior_class(data["means"], data["covariances"], data["weights"])
    except KeyError as error:
        raise DataError(f"{path}: GMM prior needs means, covariances and weights (missing {error})") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the GMM prior ({error})") from None


def cmd_export_body(args: argparse.Namespace) -> int:
    import torch

    from render3d.body import load_body_model
    from render3d.body.gltf import write_skinned_glb
    from render3d.body.io import read_json_object
    from render3d.errors import ConfigError, DataError
    from render3d.io.writable import check_writable

    out = Path(args.glb)
    if out.suffix.lower() != ".glb":
        raise ConfigError(f"--glb: {out} must end in .glb")
    check_writable(out, "--glb")
    params_path = Path(args.run) / PARAMS
    params = read_json_object(params_path, "fit-body run")
    try:
        model = load_body_model(params["model"], params.get("phenotype") if params["model"] == "anny" else None)
        betas = torch.tensor([params["betas"]], dtype=torch.float32)
        pose = torch.tensor([params["pose_axis_angle"]], dtype=torch.float32)
        transl = torch.tensor([params["transl"]], dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{params_path}: not a fit-body params file ({error})") from None
    if pose.shape != (1, model.n_joints, 3) or betas.shape[1] > model.n_betas or transl.shape != (1, 3):
        raise DataError(f"{params_path}: parameters do not match the {model.name} model")
    write_skinned_glb(out, model, betas, pose, transl)
    print(f"wrote {out} ({model.n_joints} joints, {model.n_vertices} vertices)")
    return 0
