"""``render3d view``: an interactive viewer in the browser, built on viser.

The viewer serves a web page (viser's three.js client). The browser orbits and flies its
camera; the server renders the scene through :meth:`render3d.Scene.render` from that camera
and sends the image back as the page's background, at a lower resolution while the camera
moves and at full resolution once it has been still for :data:`STILL_SECONDS`. The training
cameras are drawn as frustums with their images, with the SfM points and the mesh when there
are any; sliders set the render resolution and the background.

Camera conventions: viser's cameras, like render3d's, are OpenCV (x right, y down, z forward);
a client camera is a rotation ``wxyz`` (camera to world), a ``position`` and a *vertical* field
of view, with the canvas aspect (width / height).

``render3d fit --view`` shows a scene while it trains: :meth:`Viewer.on_step` is the
``Scene.fit(on_step=...)`` hook and renders on the training thread between steps, only while
the time it has spent stays under :data:`TRAINING_SHARE` of the fit's time, so that the
training loop is never stalled by the viewer.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render3d.cameras import Cameras
from render3d.data.dataset import quantize
from render3d.errors import ConfigError, DataError, first_line
from render3d.io.splat_gltf import has_splats
from render3d.io.splat_ply import read_ply_header

# The camera counts as still (render at full resolution) after it has not moved this long.
STILL_SECONDS = 0.25
# How often the serving thread looks for a camera or settings change.
POLL_SECONDS = 0.02
# While a fit runs, the viewer renders only while its time stays under this share of the fit's.
TRAINING_SHARE = 0.2
# Training images are shown on the frustums at most this many pixels high.
FRUSTUM_IMAGE_HEIGHT = 96
# 3DGS splat PLY properties that tell a splat file from a point cloud or mesh.
_SPLAT_PROPERTIES = ("f_dc_0", "opacity", "scale_0", "rot_0")


def import_viser():
    """The viser module, or a one-line ConfigError naming the extra that installs it."""
    try:
        import viser
    except ImportError:
        raise ConfigError("the viewer needs viser: pip install 'render3d[viewer]'") from None
    return viser


# ---------------------------------------------------------------------------- cameras
def cameras_from_view(wxyz, position, fov_y: float, aspect: float, resolution: int) -> Cameras:
    """The render3d camera of a viser client camera.

    Args:
        wxyz: ``[4]`` unit quaternion of the camera-to-world rotation (OpenCV axes).
        position: ``[3]`` camera centre in world coordinates.
        fov_y: vertical field of view in radians.
        aspect: image width / height.
        resolution: pixels of the longer image side.

    Returns:
        One camera with square pixels and a centred principal point.
    """
    from viser import transforms

    if aspect >= 1.0:
        width, height = resolution, max(1, round(resolution / aspect))
    else:
        width, height = max(1, round(resolution * aspect)), resolution
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.from_numpy(transforms.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix())
    c2w[:3, 3] = torch.as_tensor(np.asarray(position, dtype=np.float64))
    return Cameras(K=K[None], c2w=c2w[None].float(), width=width, height=height)


def view_of_camera(cameras: Cameras, index: int = 0) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(wxyz [4], position [3], fov_y, aspect)`` of camera ``index``: the inverse of
    :func:`cameras_from_view` (the field of view is the vertical one of its ``fy``)."""
    from viser import transforms

    c2w = cameras.c2w[index].detach().double().cpu().numpy()
    wxyz = transforms.SO3.from_matrix(c2w[:3, :3]).wxyz
    return wxyz, c2w[:3, 3].copy(), float(cameras.fov_y[index]), cameras.width / cameras.height


# ---------------------------------------------------------------------------- what to show
@dataclass
class Viewable:
    """What ``render3d view PATH`` shows: a scene to render, its training data, a mesh."""

    scene: object | None = None
    dataset: object | None = None
    mesh: object | None = None
    note: str | None = None


def ply_kind(path: Path) -> str:
    """``"mesh"`` for a PLY with faces, ``"splat"`` for one with the 3DGS splat properties,
    read from the header; DataError for anything else."""
    header = read_ply_header(path)
    faces = sum(count for name, count in header.elements if name == "face")
    properties = {words[-1] for words in header.vertex_properties if words}
    if faces > 0:
        return "mesh"
    if all(name in properties for name in _SPLAT_PROPERTIES):
        return "splat"
    raise DataError(f"{path}: a PLY with neither faces (a mesh) nor the 3DGS splat properties (a splat)")


def open_viewable(path: str, *, device=None, background=None) -> Viewable:
    """Load a run directory, a splat file (a 3DGS ``.ply``, a ``KHR_gaussian_splatting`` ``.glb``)
    or a mesh file (``.ply`` with faces, ``.obj``, ``.glb``) for the viewer; a run brings its training cameras, SfM points and ground-truth
    mesh when its dataset folder is still there."""
    import render3d
    from render3d.mesh import MESH_EXTENSIONS, load_mesh

    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: no such run directory or file")
    if source.is_dir():
        scene = render3d.Scene.load(source, device=device, background=background)
        return _with_dataset(scene)
    suffix = source.suffix.lower()
    if (suffix == ".ply" and ply_kind(source) == "splat") or (suffix == ".glb" and has_splats(source)):
        return Viewable(scene=render3d.Scene.load(source, device=device, background=background))
    if suffix in MESH_EXTENSIONS:
        if background is not None:
            raise ConfigError("--background: a mesh file is shown as a mesh, not rendered")
        return Viewable(mesh=load_mesh(source))
    raise DataError(f"{source}: not a run directory, a splat file or a mesh file ({', '.join(sorted(MESH_EXTENSIONS))})")


def _with_dataset(scene) -> Viewable:
    """The scene with the training split of its dataset folder (and that folder's mesh)."""
    import render3d
    from render3d.mesh import load_mesh

    root = scene.data_root
    if root is None or not root.is_dir():
        note = None if root is None else f"dataset folder {root} is gone: no training cameras shown"
        return Viewable(scene=scene, note=note)
    try:
        dataset = render3d.load_dataset(root, split="train")
    except DataError as error:
        return Viewable(scene=scene, note=f"no training cameras shown ({error})")
    mesh = load_mesh(dataset.mesh_path) if dataset.mesh_path is not None and Path(dataset.mesh_path).is_file() else None
    return Viewable(scene=scene, dataset=dataset, mesh=mesh)


# ---------------------------------------------------------------------------- the viewer
@dataclass(frozen=True)
class Rendered:
    """One render the viewer sent to a browser tab."""

    image: np.ndarray  # [H,W,3] float32 in [0,1], over the chosen background
    cameras: Cameras  # the one camera it was rendered from
    full: bool  # at full resolution (the camera was still)


@dataclass
class _ClientView:
    """One browser tab: its camera's version and what was last rendered for it."""

    client: object
    camera_version: int = 0
    moved_at: float = 0.0
    rendered: tuple | None = None  # (camera version, scene version, settings version)
    rendered_full: bool = False
    last: "Rendered | None" = None  # the last render sent (replaced whole, so readers see one render)


class Viewer:
    """A viser server showing a :class:`render3d.Scene` (rendered on demand), training
    cameras, SfM points and a mesh.

    Args:
        scene: the scene to render, or None (a mesh only, or a fit that has not started).
        dataset: training :class:`render3d.Dataset` whose cameras, images and points are shown.
        mesh: a ``trimesh.Trimesh`` to show.
        host: address to serve on (``127.0.0.1``: this machine only).
        port: TCP port (0: any free port; see :attr:`port`).
        resolution: initial pixels of the longer side of a still render.
    """

    def __init__(self, scene=None, *, dataset=None, mesh=None, host: str = "127.0.0.1", port: int = 8080,
                 resolution: int = 512):
        viser = import_viser()
        self.server = viser.ViserServer(host=host, port=port, verbose=False)  # a busy port: the next free one
        self._lock = threading.Lock()
        self._scene = scene
        self._scene_version = 0
        self._settings_version = 0
        self._clients: dict[int, _ClientView] = {}
        self._render_seconds = 0.0
        self._fit_started: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._add_controls(resolution)
        self.layers = self._add_dataset(dataset) + self._add_mesh(mesh)  # frustums, points, mesh
        self._place_camera(dataset, mesh)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.port}"

    # ------------------------------------------------------------ scene content
    def _add_controls(self, resolution: int) -> None:
        gui = self.server.gui
        self.resolution = gui.add_slider("Resolution", min=64, max=2048, step=32,
                                         initial_value=int(min(2048, max(64, resolution))),
                                         hint="pixels of the longer side of a still render")
        self.moving_scale = gui.add_slider("While moving", min=0.1, max=1.0, step=0.05, initial_value=0.25,
                                           hint="render resolution while the camera moves, as a share of the full one")
        background = self._scene_background()
        self.background = gui.add_rgb("Background", tuple(int(round(255 * c)) for c in background))
        for control in (self.resolution, self.moving_scale, self.background):
            control.on_update(self._settings_changed)

    def _add_dataset(self, dataset) -> list:
        if dataset is None:
            return []
        layers = []
        cameras = dataset.cameras
        scale = 0.05 * max(dataset.radius, 1e-6)
        stride = max(1, math.ceil(dataset.height / FRUSTUM_IMAGE_HEIGHT))
        for index in range(len(cameras)):
            wxyz, position, fov_y, aspect = view_of_camera(cameras, index)
            thumbnail = quantize(dataset.image(index)[::stride, ::stride]).cpu().numpy()
            layers.append(self.server.scene.add_camera_frustum(
                f"/cameras/{index:05d}", fov=fov_y, aspect=aspect, scale=scale, image=thumbnail,
                wxyz=wxyz, position=position, thickness=0.05 * scale))
        if dataset.points is not None and len(dataset.points):
            colors = (np.full((len(dataset.points), 3), 200, np.uint8) if dataset.point_colors is None
                      else (dataset.point_colors.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
            layers.append(self.server.scene.add_point_cloud(
                "/points", points=dataset.points.detach().float().cpu().numpy(), colors=colors,
                point_size=0.01 * dataset.radius, precision="float32"))
        return layers

    def _add_mesh(self, mesh) -> list:
        if mesh is None:
            return []
        return [self.server.scene.add_mesh_simple("/mesh", vertices=np.asarray(mesh.vertices, np.float32),
                                                  faces=np.asarray(mesh.faces, np.uint32), side="double")]

    def _place_camera(self, dataset, mesh) -> None:
        """Start at the first training camera, else looking at the scene's or mesh's bounds."""
        initial = self.server.initial_camera
        if dataset is not None and len(dataset.cameras):
            c2w = dataset.cameras.c2w.detach().double().cpu().numpy()
            up = -c2w[:, :3, 1].mean(axis=0)
            if np.linalg.norm(up) > 1e-6:
                self.server.scene.set_up_direction(up / np.linalg.norm(up))
                initial.up = up / np.linalg.norm(up)
            _, position, fov_y, _ = view_of_camera(dataset.cameras, 0)
            distance = max(float(np.linalg.norm(dataset.center.cpu().numpy() - position)), 1e-3)
            initial.position = position
            initial.look_at = position + distance * c2w[0, :3, 2]
            initial.fov = fov_y
            return
        if mesh is not None:
            low, high = np.asarray(mesh.bounds[0]), np.asarray(mesh.bounds[1])
        elif self._scene is not None:
            low, high = (np.asarray(corner, dtype=np.float64) for corner in self._scene.method.scene_info.aabb)
        else:
            return
        center, extent = 0.5 * (low + high), max(float(np.linalg.norm(high - low)), 1e-3)
        initial.look_at = center
        initial.position = center + extent * np.array([0.8, -0.8, 0.6])

    def _scene_background(self) -> tuple[float, float, float]:
        if self._scene is None:
            return (0.0, 0.0, 0.0)
        return tuple(float(c) for c in self._scene.method.scene_info.background)

    # ------------------------------------------------------------ clients and their cameras
    def _connect(self, client) -> None:
        view = _ClientView(client)
        with self._lock:
            self._clients[client.client_id] = view

        @client.camera.on_update
        def _moved(_camera) -> None:
            with self._lock:
                view.camera_version += 1
                view.moved_at = time.monotonic()

        _moved(client.camera)

    def _disconnect(self, client) -> None:
        with self._lock:
            self._clients.pop(client.client_id, None)

    def _settings_changed(self, _event) -> None:
        with self._lock:
            self._settings_version += 1

    def client_views(self) -> list[_ClientView]:
        """The connected browser tabs (their last render and camera, for tests and tools)."""
        with self._lock:
            return list(self._clients.values())

    # ------------------------------------------------------------ rendering
    def set_scene(self, scene) -> None:
        """Show ``scene`` (e.g. the same scene after more training steps) from now on."""
        with self._lock:
            first = self._scene is None and self._settings_version == 0
            self._scene = scene
            self._scene_version += 1
        if first and scene is not None:  # a fit's first step: its background, unless one was picked
            self.background.value = tuple(int(round(255 * c)) for c in self._scene_background())

    def render_pending(self, *, full: bool = True) -> int:
        """Render every client whose camera, scene or settings changed since its last render,
        or whose camera came to rest after a lower-resolution render; returns how many.
        ``full=False`` renders at the moving resolution even when the camera is still."""
        rendered = 0
        for view in self.client_views():
            with self._lock:
                scene, key = self._scene, (view.camera_version, self._scene_version, self._settings_version)
                still = full and time.monotonic() - view.moved_at >= STILL_SECONDS
            if scene is None or (key == view.rendered and (view.rendered_full or not still)):
                continue
            began = time.perf_counter()
            try:
                self._render(view, scene, key, full=still)
            except (RuntimeError, ValueError) as error:  # e.g. out of memory at a high resolution: say so, go on
                first = first_line(error)
                print(f"render3d view: cannot render this view: {first}", file=sys.stderr, flush=True)
                view.rendered, view.rendered_full = key, True
            self._render_seconds += time.perf_counter() - began
            rendered += 1
        return rendered

    def _render(self, view: _ClientView, scene, key: tuple, *, full: bool) -> None:
        camera = view.client.camera
        if camera.image_width <= 0 or camera.image_height <= 0:
            return
        resolution = int(self.resolution.value) if full else max(16, int(self.resolution.value * self.moving_scale.value))
        cameras = cameras_from_view(camera.wxyz, camera.position, camera.fov, camera.aspect, resolution)
        out = scene.render(cameras)
        rgb, alpha = out["rgb"][0], out["alpha"][0]
        fitted = torch.tensor(scene.method.scene_info.background, dtype=rgb.dtype)
        wanted = torch.tensor(self.background.value, dtype=rgb.dtype) / 255.0
        image = (rgb + (1.0 - alpha)[..., None] * (wanted - fitted)).clamp(0, 1)
        pixels = (image * 255).round().to(torch.uint8).numpy()
        view.client.scene.set_background_image(pixels, format="jpeg", jpeg_quality=90 if full else 70)
        view.last = Rendered(image.numpy(), cameras, full)
        view.rendered, view.rendered_full = key, full

    def start(self) -> "Viewer":
        """Render in a background thread from now on (``render3d view``; after a fit)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._serve, name="render3d-viewer", daemon=True)
            self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.render_pending():
                self._stop.wait(POLL_SECONDS)

    def on_step(self, scene, step: int) -> None:
        """The ``Scene.fit(on_step=...)`` hook: show the newest parameters, rendering between
        steps only while the viewer's time stays under :data:`TRAINING_SHARE` of the fit's,
        at the moving resolution (the parameters change at every step; full resolution once
        the fit is over and the camera is still)."""
        now = time.perf_counter()
        if self._fit_started is None:
            self._fit_started, self._render_seconds = now, 0.0
        self.set_scene(scene)
        if self._render_seconds <= TRAINING_SHARE * (now - self._fit_started):
            self.render_pending(full=False)

    def close(self) -> None:
        """Stop rendering and serving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.server.stop()


def fit_viewer(data: str, *, host: str, port: int, echo=print) -> Viewer:
    """The viewer of ``render3d fit --view``: the training cameras of ``data`` at once, the
    scene from the first step on (pass :meth:`Viewer.on_step` to ``Scene.fit``)."""
    import render3d
    from render3d.data.shapes import is_shape_path

    dataset = None if is_shape_path(data) else render3d.load_dataset(data, split="train")
    viewer = Viewer(dataset=dataset, host=host, port=port, resolution=256)
    echo(f"viewer at {viewer.url}")
    return viewer


def open_viewer(viewable: Viewable, *, host: str, port: int, resolution: int, echo=print) -> Viewer:
    """``render3d view``: a viewer of ``viewable``, rendering in its background thread."""
    viewer = Viewer(viewable.scene, dataset=viewable.dataset, mesh=viewable.mesh, host=host, port=port,
                    resolution=resolution).start()
    if viewable.note:
        echo(f"note: {viewable.note}")
    echo(f"viewer at {viewer.url} (Ctrl-C to stop)")
    return viewer


def serve_until_stopped(viewer: Viewer, stop: threading.Event | None = None) -> None:
    """Keep ``viewer`` serving until Ctrl-C or SIGTERM (a normal stop, not an error) or until
    ``stop`` is set."""
    import signal

    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda *_: stop.set())
    viewer.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        viewer.close()
