"""The contract every scene representation implements.

A :class:`Method` is a ``torch.nn.Module`` that owns its parameters *and* its optimisers,
so that :class:`render3d.Scene` can drive any representation with one loop:

1. ``method = cls(config, scene_info)`` — ``config`` is ``cls.make_config(overrides, steps,
   preset, data_defaults=cls.data_defaults(data, preset))``, ``scene_info`` a :class:`SceneInfo`
   (JSON-serialisable facts about the data). The data come from
   ``cls.load_training_data(path, device)`` and the facts from ``cls.scene_info_for(data)``
   (image datasets by default; shape methods read meshes and point clouds).
2. ``method.setup(dataset)`` once before training (e.g. Gaussians from SfM points).
3. ``method.train_step(step)`` for ``step`` in ``range(config["steps"])``, returning scalar
   metrics (at least ``"loss"``; ``"psnr"`` when it has one) for the progress bar.
4. ``method.render(cameras)`` for any cameras, under ``torch.no_grad``.

Checkpoints hold ``config``, ``scene_info`` and ``state_dict()``; ``Scene.load`` rebuilds the
method with ``cls(config, scene_info)`` and calls ``load_state_dict``. Checkpoints written before
the last step also hold ``training_state()`` (optimiser moments, schedule position...): a resumed
fit calls ``setup(dataset)``, ``load_state_dict`` and then ``load_training_state`` and continues
exactly where the interrupted one stopped.

Data-parallel training (:mod:`render3d.distributed`): ``Scene.fit`` sets ``method.parallel``
before ``setup``. A method that supports several processes trains on its share of each global
batch, sums its gradients over the ranks (``parallel.sum_gradients``) before the optimiser step
and keeps every rank's decisions identical; the default :data:`SINGLE_PROCESS` changes nothing.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor

from render3d.cameras import Cameras
from render3d.data.dataset import Dataset
from render3d.data.focus import focus_box
from render3d.distributed import SINGLE_PROCESS, DataParallel
from render3d.errors import ConfigError
from render3d.methods._captures import is_capture


@dataclass(frozen=True)
class SceneInfo:
    """What a method may know about its scene without the images (saved in checkpoints).

    Attributes:
        aabb: ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` scene bounds.
        near: smallest ray distance worth sampling.
        far: largest ray distance worth sampling.
        background: RGB in [0,1] that RGBA images were composited over.
        width: training image width in pixels.
        height: training image height in pixels.
        shapes: for shape data (meshes, point clouds), one ``{"name", "center": [x, y, z],
            "scale"}`` per shape: ``world = normalised * scale + center`` (empty for images).
        focus: for a capture whose cameras look at a common point, the box around it
            (:func:`render3d.data.focus.focus_box`: the object, not the room); else None.
    """

    aabb: tuple[tuple[float, float, float], tuple[float, float, float]]
    near: float
    far: float
    background: tuple[float, float, float]
    width: int
    height: int
    shapes: tuple = ()
    focus: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    @staticmethod
    def from_dataset(dataset: Dataset) -> "SceneInfo":
        aabb = dataset.aabb.detach().cpu().tolist()
        focus = focus_box(dataset.cameras) if is_capture(dataset) else None
        return SceneInfo(
            aabb=(tuple(aabb[0]), tuple(aabb[1])),
            near=float(dataset.near),
            far=float(dataset.far),
            background=tuple(float(c) for c in dataset.background),
            width=dataset.width,
            height=dataset.height,
            focus=None if focus is None else _box_tuple(focus.tolist()),
        )

    @staticmethod
    def from_dict(values: dict) -> "SceneInfo":
        try:
            aabb = values["aabb"]
            return SceneInfo(
                aabb=(tuple(aabb[0]), tuple(aabb[1])),
                near=float(values["near"]),
                far=float(values["far"]),
                background=tuple(values["background"]),
                width=int(values["width"]),
                height=int(values["height"]),
                shapes=tuple(values.get("shapes", ())),
                focus=None if values.get("focus") is None else _box_tuple(values["focus"]),
            )
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise ConfigError(f"scene_info is malformed: {error!r}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def aabb_tensor(self, device: torch.device | str | None = None) -> Tensor:
        """``[2,3]`` float32 bounds."""
        return torch.tensor(self.aabb, dtype=torch.float32, device=device)

    def mesh_box(self) -> Tensor:
        """``[2,3]`` float32 region a mesh covers by default: the capture's focus box, else the bounds."""
        return torch.tensor(self.focus if self.focus is not None else self.aabb, dtype=torch.float32)


def _box_tuple(box) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    return tuple(float(v) for v in box[0]), tuple(float(v) for v in box[1])


class Method(torch.nn.Module, abc.ABC):
    """Base class of scene representations (see the module docstring for the life cycle).

    Subclasses set ``name`` (the registry key, e.g. ``"nerf"``), ``description`` (one line
    for ``render3d info``), ``default_config`` (every tunable, with its default; it must
    contain ``"steps"``), ``demo_config`` (overrides, ``"steps"`` included, that
    ``render3d demo`` uses on the embedded scene) and ``presets`` (named overrides of
    ``default_config``: ``"fast"`` a preview in minutes, ``"balanced"``, ``"full"`` the paper
    recipe; :meth:`default_preset` picks one for the device).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    default_config: ClassVar[dict] = {"steps": 1000}
    demo_config: ClassVar[dict] = {}
    presets: ClassVar[dict[str, dict]] = {"fast": {}, "balanced": {}, "full": {}}
    # Presets that are wall-clock promises on a CPU: seconds of fitting (evaluation is extra). Such a
    # fit sets its step count, and with it the whole schedule, from the measured speed (as
    # ``time_budget`` does), so a slower or busier machine gets fewer steps, never a longer fit; the
    # preset's ``steps`` is the plan before any step is timed. A preset not named here is a step count.
    cpu_budgets: ClassVar[dict[str, float]] = {}
    # What the method trains on: "images" (posed image datasets; Scene.evaluate and dataset
    # orbits apply) or "shapes" (meshes and point clouds, render3d.data.shapes).
    data_kind: ClassVar[str] = "images"
    # Whether train_step splits its batch over the ranks of a process group (render3d.distributed).
    supports_data_parallel: ClassVar[bool] = False
    # Keyword arguments ``render`` takes besides the cameras (e.g. ``pose`` for a body): what else a
    # view depends on. Scene.render passes them on; :meth:`conditions_for` gives them per image. A
    # method with ``pose`` has its render3d.BodyModel as ``body``.
    render_conditions: ClassVar[tuple[str, ...]] = ()
    # Whether :meth:`conditions_for` reads the dataset's images and masks (an avatar fits and
    # refines poses it was not trained on against them), so renders of a dataset load them.
    conditions_read_images: ClassVar[bool] = False

    def __init__(self, config: dict, scene_info: SceneInfo) -> None:
        super().__init__()
        self.config = dict(config)
        self.scene_info = scene_info
        self.parallel: DataParallel = SINGLE_PROCESS

    @classmethod
    def load_training_data(cls, data, device: torch.device, *, downscale: int = 1):
        """The training data at ``data`` (a path, or data already loaded) for ``setup``; it
        has a ``root`` path. Default: the image dataset's training split with its images
        shrunk by ``downscale``, on ``device``."""
        if not isinstance(data, Dataset):
            from render3d.data import load_dataset

            data = load_dataset(data, split="train", downscale=downscale)
        if data.images is None:
            raise ConfigError(f"{data.root}: the dataset was loaded with images=False (cameras only); "
                              "fitting needs its images")
        return data.to(device)

    @classmethod
    def complete_training_data(cls, data, config: dict | None, *, progress: bool):
        """The training ``data`` (from :meth:`load_training_data`) with what the method derives
        from it once, before its data defaults and ``setup``, given the user's ``config``
        overrides (None: none). Default: ``data`` as it is."""
        return data

    @classmethod
    def scene_info_for(cls, data) -> SceneInfo:
        """The :class:`SceneInfo` of training data from :meth:`load_training_data`."""
        return SceneInfo.from_dataset(data)

    @classmethod
    def default_preset(cls, device: torch.device) -> str:
        """The preset a fit uses when none is named: ``"full"`` on a GPU, ``"balanced"`` (sized
        to finish in minutes on a few cores) otherwise."""
        return "full" if torch.device(device).type == "cuda" else "balanced"

    @classmethod
    def preset_budget(cls, preset: str, device: torch.device, steps: int | None, config: dict | None) -> float | None:
        """The seconds of fitting that ``preset`` promises on ``device`` (:attr:`cpu_budgets`), or
        None where it is a step count: on a GPU, for a preset without a budget, or when the
        caller fixed the steps (``steps``, or ``"steps"`` in ``config``)."""
        if torch.device(device).type != "cpu" or steps is not None or "steps" in (config or {}):
            return None
        return cls.cpu_budgets.get(preset)

    @classmethod
    def data_defaults(cls, data, preset: str) -> dict:
        """Config values that suit this kind of training ``data`` (from
        :meth:`load_training_data`) better than the ``preset``'s; the user's values still win."""
        return {}

    @classmethod
    def make_config(cls, overrides: dict | None = None, steps: int | None = None, preset: str | None = None, *,
                    data_defaults: dict | None = None) -> dict:
        """``default_config`` updated with the ``preset``'s values, the ``data_defaults``
        (:meth:`data_defaults`), then ``overrides`` and ``steps``; unknown keys and presets are
        refused."""
        config = dict(cls.default_config)
        if preset is not None:
            if preset not in cls.presets:
                raise ConfigError(f"preset {preset!r} is not one of method {cls.name!r}'s: {', '.join(cls.presets)}")
            config.update(cls.presets[preset])
        config.update(data_defaults or {})
        for key, value in (overrides or {}).items():
            if key not in config:
                known = ", ".join(sorted(config))
                raise ConfigError(f"config key {key!r} is not an option of method {cls.name!r} (options: {known})")
            config[key] = _checked_option(cls.name, key, value, config[key])
        if steps is not None:
            config["steps"] = steps
        if isinstance(config["steps"], bool) or not isinstance(config["steps"], int) or config["steps"] < 0:
            raise ConfigError(f"steps must be a non-negative integer, got {config['steps']!r}")
        return config

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @abc.abstractmethod
    def setup(self, dataset: Dataset) -> None:
        """Prepare for training on ``dataset`` (already on the method's device)."""

    @abc.abstractmethod
    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns scalar metrics including ``"loss"``."""

    def training_state(self) -> dict:
        """What training needs besides ``state_dict()`` to continue exactly after ``setup``.

        The default holds the state of ``self.optimizer`` and ``self.scheduler`` when the method
        has them (the built-in methods keep theirs there). Methods with more training state
        (an adaptive batch size, densification statistics, a sampling order) extend it. Values
        must be tensors, numbers, strings, lists, tuples or dicts (``torch.load(weights_only=True)``).
        """
        state = {}
        for name in ("optimizer", "scheduler"):
            if hasattr(self, name):
                state[name] = getattr(self, name).state_dict()
        return state

    def set_total_steps(self, steps: int) -> None:
        """Change the fit's total step count while it runs (a time budget does): the schedule
        of the remaining steps follows. The default sets ``config["steps"]``, which the
        built-in schedules read at every step; methods that cache schedule values extend it."""
        self.config["steps"] = int(steps)

    def learning_rates(self) -> dict[str, float]:
        """The current learning rate of each parameter group of ``self.optimizer`` (by the group's
        ``name``, else its index), for the training curves; ``{}`` without an optimizer."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None:
            return {}
        return {str(group.get("name", index)): float(group["lr"]) for index, group in enumerate(optimizer.param_groups)}

    def load_training_state(self, state: dict) -> None:
        """Restore :meth:`training_state` after ``setup(dataset)`` and ``load_state_dict``."""
        for name in ("optimizer", "scheduler"):
            if name in state:
                getattr(self, name).load_state_dict(state[name])

    @abc.abstractmethod
    def render(self, cameras: Cameras) -> dict[str, Tensor]:
        """Render every camera.

        Returns:
            ``rgb [C,H,W,3]`` in [0,1] composited over the scene background,
            ``depth [C,H,W]`` (expected ray distance, 0 where nothing was hit),
            ``alpha [C,H,W]`` accumulated opacity in [0,1].
        """

    def conditions_for(self, dataset: Dataset) -> list[dict] | None:
        """The :attr:`render_conditions` of each image of ``dataset`` (e.g. the pose of the body
        it shows), for evaluation; None when the cameras alone decide a view (the default)."""
        return None

    def density_field(self) -> tuple[Callable[[Tensor], Tensor], float]:
        """A field ``[N,3] world points -> [N] values`` and the iso-level of the surface.

        Methods that can be meshed override this. Values above the level are inside, so a
        signed-distance method returns the negated distance (and level 0).
        """
        raise ConfigError(f"method {self.name!r} cannot extract a mesh")

    def density_volume(self, bbox: Tensor, resolution: tuple[int, int, int], *,
                       progress: bool = False) -> tuple[Tensor, float]:
        """The density on the grid of ``bbox [2,3]`` with ``resolution`` samples per axis (corner
        samples on the box corners): ``[X,Y,Z]`` float32 values and the iso-level.

        The default samples :meth:`density_field`; methods whose density is cheaper to build
        as a whole volume (e.g. splatting Gaussians) override this instead.
        """
        from render3d.mesh import sample_field

        field, level = self.density_field()
        return sample_field(field, bbox, resolution, device=self.device, progress=progress), level

    @property
    def can_mesh(self) -> bool:
        """Whether :meth:`density_volume` works for this method."""
        cls = type(self)
        return cls.density_field is not Method.density_field or cls.density_volume is not Method.density_volume


def _checked_option(method: str, key: str, value, default):
    """``value`` if it has the type of ``default`` (an int is a valid float; a float is never
    truncated into an int option); ConfigError naming the option otherwise."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        valid = isinstance(value, bool)
    elif isinstance(default, int):
        valid = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        valid = isinstance(value, type(default))
    if not valid:
        raise ConfigError(f"config key {key!r} of method {method!r} must be {type(default).__name__} "
                          f"like its default {default!r}, got {value!r}")
    return float(value) if isinstance(default, float) else value
