"""Scene representations and their registry.

Each module in this package defines a :class:`render3d.methods.base.Method` subclass and
registers it with :func:`register`. Modules are discovered and imported on first lookup,
so ``import render3d`` stays cheap and a new method needs no central list.
"""
from __future__ import annotations

import importlib
import pkgutil

from render3d.errors import ConfigError

_REGISTRY: dict[str, type] = {}
_discovered = False


def register(cls: type) -> type:
    """Class decorator: make ``cls`` available as ``Scene.fit(..., method=cls.name)``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{cls.__qualname__} needs a non-empty 'name' to be registered")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ConfigError(f"method name {name!r} is already registered by {existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a registered method (used by tests that register temporary methods)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    _discovered = True


def available_methods() -> dict[str, type]:
    """Registered methods by name, sorted."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> type:
    """The method class registered as ``name``; ConfigError naming the options otherwise."""
    methods = available_methods()
    if name not in methods:
        options = ", ".join(methods) or "none is installed yet"
        raise ConfigError(f"unknown method {name!r} (available: {options})")
    return methods[name]
