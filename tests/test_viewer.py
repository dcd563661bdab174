"""The browser viewer (render3d.apps.view): camera conversion to and from viser's cameras, what
it loads and shows, the Scene.fit on_step hook, and a real headless Chromium that opens the
page: the screenshot must show the render of the camera the browser holds.

The browser is the Debian ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them) driven
by selenium; a missing browser, driver, viser or selenium fails these tests, never skips them.
"""
import io
import math
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import render3d
from render3d.apps.cli import main as cli_main
from render3d.apps.view import Viewer, cameras_from_view, open_viewable, ply_kind, view_of_camera
from render3d.camera_paths import orbit
from render3d.cameras import Cameras, intrinsics_from_fov
from render3d.errors import DataError
from render3d.io.splat_ply import save_splat_ply

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT = 60.0  # seconds for any one wait on the browser (a loaded CI machine renders slowly)


@pytest.fixture(scope="module")
def splat_path(tmp_path_factory) -> Path:
    """An asymmetric cloud of 60 coloured Gaussians (a wrong camera rotation shows)."""
    g = torch.Generator().manual_seed(0)
    n = 60
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([1.6, 1.0, 0.6])
    means[:8] += torch.tensor([0.9, 0.0, 0.0])  # a lump on +x
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    sh = torch.zeros(n, 1, 3)
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / 0.28209479
    path = tmp_path_factory.mktemp("viewer") / "splat.ply"
    return save_splat_ply(path, means, quats, torch.full((n, 3), math.log(0.1)), torch.full((n,), 4.0), sh)


@pytest.fixture(scope="module")
def splat(splat_path):
    return render3d.Scene.load(splat_path, device="cpu")


def _cameras(width: int, height: int, n: int = 3) -> Cameras:
    return orbit(torch.zeros(3), 3.0, n, intrinsics_from_fov(0.9, width, height), width, height, elevation_deg=25.0)


def test_camera_round_trip_through_viser_conventions(splat):
    cameras = _cameras(40, 30)
    for index in range(len(cameras)):
        wxyz, position, fov_y, aspect = view_of_camera(cameras, index)
        assert np.isclose(np.linalg.norm(wxyz), 1.0) and aspect == pytest.approx(40 / 30)
        back = cameras_from_view(wxyz, position, fov_y, aspect, resolution=40)
        assert (back.width, back.height) == (40, 30)
        torch.testing.assert_close(back.K, cameras.K[index:index + 1], atol=1e-4, rtol=0)
        torch.testing.assert_close(back.c2w, cameras.c2w[index:index + 1], atol=1e-5, rtol=0)
    # The viewer's render of a converted camera is Scene.render of the original one.
    wxyz, position, fov_y, aspect = view_of_camera(cameras, 1)
    expected = splat.render(cameras[1])["rgb"]
    assert (expected.amax(-1) > 0.1).float().mean() > 0.05  # the scene is in view
    torch.testing.assert_close(splat.render(cameras_from_view(wxyz, position, fov_y, aspect, 40))["rgb"], expected,
                               atol=1e-4, rtol=0)
    # A portrait canvas keeps the longer side at the resolution.
    tall = cameras_from_view(wxyz, position, fov_y, 0.5, resolution=64)
    assert (tall.width, tall.height) == (32, 64)


def test_ply_kind_reads_the_header(splat_path, tmp_path):
    import trimesh

    mesh_path = tmp_path / "box.ply"
    trimesh.creation.box().export(mesh_path)
    cloud = tmp_path / "cloud.ply"
    cloud.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                     "property float z\nend_header\n0 0 0\n")
    assert ply_kind(splat_path) == "splat" and ply_kind(mesh_path) == "mesh"
    with pytest.raises(DataError, match="neither faces"):
        ply_kind(cloud)
    assert open_viewable(str(splat_path), device="cpu").scene is not None
    shown = open_viewable(str(mesh_path))
    assert shown.scene is None and len(shown.mesh.faces) == 12
    with pytest.raises(DataError, match="no such"):
        open_viewable(str(tmp_path / "missing.ply"))


def test_a_glb_opens_as_splats_or_as_a_mesh(splat_path, tmp_path):
    import trimesh

    glb = render3d.Scene.load(splat_path).export_splat(tmp_path / "splat.glb")
    assert open_viewable(str(glb), device="cpu").scene is not None
    mesh_path = tmp_path / "box.glb"
    trimesh.creation.box().export(mesh_path)
    shown = open_viewable(str(mesh_path))
    assert shown.scene is None and len(shown.mesh.faces) == 12


def test_view_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    for target, expected in (("missing", "no such run directory or file"), ("notes.txt", "not a run directory")):
        assert cli_main(["view", str(tmp_path / target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and err.startswith("render3d view: error:")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["view", str(tmp_path), "--port", "70000"])
    assert exit_info.value.code == 2


def test_viewer_shows_training_cameras_points_and_mesh(sphere_dataset):
    import trimesh

    sphere_dataset.points = torch.rand(50, 3) - 0.5
    sphere_dataset.point_colors = torch.rand(50, 3)
    viewer = Viewer(dataset=sphere_dataset, mesh=trimesh.creation.box(), port=_free_port())
    try:
        kinds = [type(layer).__name__ for layer in viewer.layers]
        assert kinds == ["CameraFrustumHandle"] * len(sphere_dataset) + ["PointCloudHandle", "MeshHandle"]
        # each frustum shows its training image (24 px high: under FRUSTUM_IMAGE_HEIGHT, not downsampled)
        expected = (sphere_dataset.image(2).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(viewer.layers[2].image, expected)
        assert viewer.render_pending() == 0  # no scene and no browser: nothing to render
    finally:
        viewer.close()


def test_lower_resolution_while_moving_full_when_still(splat, monkeypatch):
    from types import SimpleNamespace

    from render3d.apps import view as view_module

    wxyz, position, fov_y, _ = view_of_camera(_cameras(40, 30), 0)
    sent, moved = [], []
    camera = SimpleNamespace(wxyz=wxyz, position=position, fov=fov_y, aspect=4 / 3, image_width=400, image_height=300,
                             on_update=lambda callback: moved.append(callback) or callback)
    client = SimpleNamespace(client_id=1, camera=camera,
                             scene=SimpleNamespace(set_background_image=lambda image, **_: sent.append(image.shape)))

    def moving(is_moving: bool) -> None:  # whether the last camera move counts as recent (no sleeps: CI is slow)
        monkeypatch.setattr(view_module, "STILL_SECONDS", 3600.0 if is_moving else 0.0)

    viewer = Viewer(splat, port=_free_port(), resolution=64)
    try:
        moving(True)
        viewer._connect(client)  # what viser calls when a browser tab connects (its camera just arrived)
        assert viewer.render_pending() == 1 and sent == [(12, 16, 3)]  # 0.25 x 64 while moving
        assert viewer.render_pending() == 0  # nothing new until the camera comes to rest
        moving(False)
        assert viewer.render_pending() == 1 and sent[-1] == (48, 64, 3)  # still: full resolution
        assert viewer.render_pending() == 0
        moving(True)
        moved[0](camera)  # the browser moves its camera
        assert viewer.render_pending() == 1 and sent[-1] == (12, 16, 3)
        viewer.resolution.value = 96  # a slider
        viewer._settings_changed(None)
        assert viewer.render_pending() == 1 and sent[-1] == (18, 24, 3)
        moving(False)
        assert viewer.render_pending() == 1 and sent[-1] == (72, 96, 3)
    finally:
        viewer.close()


def test_fit_calls_on_step_between_steps_and_keeps_training_mode(toy_method, sphere_dataset):
    seen = []

    def on_step(scene, done):
        seen.append((done, scene.method.training))
        scene.render(sphere_dataset.cameras[0])  # a viewer renders here, which puts the method in eval mode

    render3d.Scene.fit(sphere_dataset, method="toy", steps=5, progress=False, on_step=on_step)
    assert seen == [(step, True) for step in range(1, 6)]


# ---------------------------------------------------------------------------- the real browser
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (software WebGL); fails when either is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), (
        "the viewer test needs the Debian packages chromium and chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(prefix='render3d-chromium-')}",
                 "--window-size=640,480", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    driver.set_script_timeout(TIMEOUT)
    yield driver
    driver.quit()


def _wait(condition, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _screenshot(driver) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"), np.float32) / 255.0


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    pixels = Image.fromarray((image * 255).round().astype(np.uint8)).resize((width, height), Image.BILINEAR)
    return np.asarray(pixels, np.float32) / 255.0


def _connect(browser, viewer: Viewer):
    browser.get(viewer.url)
    return _wait(lambda: (viewer.client_views() or [None])[0], "the page to connect to the viewer")


@pytest.mark.slow
def test_browser_shows_the_render_of_its_camera(browser, splat, splat_path):
    viewer = Viewer(splat, port=_free_port(), resolution=160).start()
    try:
        view = _connect(browser, viewer)
        cameras = _cameras(160, 120)
        wxyz, position, fov_y, _ = view_of_camera(cameras, 0)
        camera = view.client.camera

        def aim():
            # viser's setters build the new camera from its last known state, and the browser's echo
            # of an earlier move can replace that state between two of them (seen once on a loaded
            # CI machine: the browser then rests at a blend of both). Aim again until it holds.
            camera.fov, camera.position, camera.wxyz = fov_y, position, wxyz
            aim.at = time.monotonic()

        def settled():  # the browser echoed our camera back, and the viewer rendered it at full resolution
            last = view.last
            if last is not None and last.full:
                focal = 0.5 * last.cameras.height / math.tan(0.5 * fov_y)
                if (torch.allclose(last.cameras.c2w[0], cameras.c2w[0], atol=1e-4)
                        and math.isclose(float(last.cameras.K[0, 1, 1]), focal, rel_tol=1e-4)):
                    return last
            if time.monotonic() - aim.at > 5.0:
                aim()
            return None

        aim()

        last = _wait(settled, "a full-resolution render of the camera set in the browser")
        height = last.cameras.height
        assert last.cameras.width == 160 and abs(height - 160 / camera.aspect) <= 1
        # Through the viewer's camera: Scene.render of the same pose and vertical field of view.
        focal = 0.5 * height / math.tan(0.5 * fov_y)
        K = torch.tensor([[focal, 0.0, 80.0], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
        # (a scene of its own: the viewer's thread may be rendering `splat` right now)
        reference = render3d.Scene.load(splat_path, device="cpu")
        expected = reference.render(Cameras(K=K[None], c2w=cameras.c2w[:1], width=160, height=height))["rgb"][0]
        assert (expected.amax(-1) > 0.1).float().mean() > 0.2  # the scene fills much of the view
        np.testing.assert_allclose(last.image, expected.numpy(), atol=2e-3)

        # The page shows that render: compare the screenshot below the control panel, right of the axes gizmo.
        def shown():
            shot = _screenshot(browser)
            height, width = shot.shape[:2]
            want = _resized(last.image, width, height)
            rows, cols = slice(int(0.45 * height), int(0.95 * height)), slice(int(0.15 * width), width)
            region, target = shot[rows, cols], want[rows, cols]
            drawn = (region.max(-1) > 0.1).mean()
            error = np.abs(region - target).mean()
            shown.last = f"{drawn:.1%} of the region drawn (expected {(target.max(-1) > 0.1).mean():.1%}), mean |diff| {error:.3f}"
            return drawn > 0.2 and error < 0.05

        shown.last = "no screenshot"
        deadline = time.monotonic() + TIMEOUT
        while not shown():
            assert time.monotonic() < deadline, f"the screenshot does not show the render: {shown.last}"
            time.sleep(0.2)
        print(f"screenshot: {shown.last}")  # shown with pytest -s or -rA

        # The browser draws its own geometry (three.js) with the same camera: a marker lands where
        # render3d projects it, so render and frustums/points/meshes line up.
        before = _screenshot(browser)
        height, width = before.shape[:2]
        world = (cameras.c2w[0] @ torch.tensor([0.25, 0.3, 2.5, 1.0]))[:3]
        screen = Cameras(K=K[None], c2w=cameras.c2w[:1], width=160, height=last.cameras.height)
        expected_xy = screen.project(world[None])[0][0, 0].numpy() * np.array([width / 160, height / screen.height])
        viewer.server.scene.add_icosphere("/marker", radius=0.04, color=(255, 0, 255), position=world.numpy())

        def marker():
            changed = np.abs(_screenshot(browser) - before).max(-1) > 0.25
            if changed.sum() < 10:
                return None
            rows, cols = np.nonzero(changed)
            return (cols.mean() + 0.5, rows.mean() + 0.5)

        found = np.array(_wait(marker, "the marker to appear in the page"))
        assert np.linalg.norm(found - expected_xy) < 0.02 * width, (found, expected_xy)
        print(f"marker at {found.round(1)} px, projected at {expected_xy.round(1)} px")
    finally:
        viewer.close()


@pytest.mark.slow
def test_fit_with_the_viewer_renders_between_steps(browser, toy_method, sphere_dataset):
    viewer = Viewer(dataset=sphere_dataset, port=_free_port(), resolution=64)
    try:
        view = _connect(browser, viewer)
        steps = []

        def on_step(scene, done):
            steps.append(done)
            viewer.on_step(scene, done)

        render3d.Scene.fit(sphere_dataset, method="toy", steps=40, progress=False, on_step=on_step)
        assert steps == list(range(1, 41))
        assert view.rendered is not None and view.rendered[1] >= 1  # rendered a training state
        assert view.last.image.std() > 0.05  # the sphere over the dataset's background, not a blank image
        assert viewer.background.value == (255, 255, 255)  # the fitted scene's background
    finally:
        viewer.close()
