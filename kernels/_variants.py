"""Declared kernel variants: the one list that both the launchers and ``render3d check-kernels`` use.

A Triton kernel compiles once per combination of its constexpr values and of the types of
its arguments (the dtype of each tensor, ``i32``/``i64``/``fp32``/``u1`` for Python ints,
floats and bools). The interpreter runs any combination; a real GPU compiler may reject some.
So every kernel in ``render3d.kernels`` states the combinations it is launched with:

    @declare(
        types={"x_ptr out_ptr": ["*fp32", "*fp64"], "n": "i32"},  # names sharing one type: type or alternatives
        constexprs=product(BLOCK=[128], SQUARE=[False, True]),   # list of dicts naming every constexpr
        options={"num_warps": 4},                                # launch options, passed by the launch
    )
    @triton.jit
    def _kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, SQUARE: tl.constexpr): ...

    _kernel[grid](x, out, n, BLOCK=128, SQUARE=square)           # launched exactly as before

The variants are the product of ``constexprs`` with every choice of the ``types``
alternatives. ``declare`` refuses a declaration that misses or invents a parameter; a launch
whose constexprs or argument types are not declared raises :class:`UndeclaredVariantError`
before anything runs; launch options come from the declaration only. ``render3d
check-kernels`` compiles every declared variant for real GPU targets and fails on a
``@triton.jit`` function of a kernel module that is neither declared nor called by a declared
kernel. Keep the set finite: a size that only enters index arithmetic or a loop bound is a
runtime argument, not a constexpr. Validate user-facing arguments (with ``ConfigError``) before
launching: this error is for the programmer.
"""
from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triton.runtime.jit import mangle_type

__all__ = ["DeclaredKernel", "UndeclaredVariantError", "Variant", "declare", "product"]


class UndeclaredVariantError(RuntimeError):
    """A kernel was launched with constexprs or argument types it did not declare."""


@dataclass(frozen=True)
class Variant:
    """One compiled form of a kernel: constexpr values and the Triton type of every other argument."""

    constexprs: tuple[tuple[str, Any], ...]
    types: tuple[tuple[str, str], ...]


def product(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the given constexpr values, as a list of dicts (in axis order)."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(tuple(axes[name]) for name in names))]


def _is_constexpr(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    return annotation is not inspect.Parameter.empty and "constexpr" in str(annotation)


def _python_function(kernel: Any):
    """The decorated Python function of a ``JITFunction`` or of the interpreter's stand-in."""
    return getattr(kernel, "fn", kernel)


class DeclaredKernel:
    """A ``@triton.jit`` kernel with its declared variants; ``kernel[grid](...)`` launches it
    after checking that the launch is one of them.

    Attributes:
        jit: the Triton function (a ``JITFunction``, or the interpreter's stand-in under
            ``TRITON_INTERPRET=1``).
        name: the kernel's function name.
        module: the name of the module that defines it.
        variants: every declared :class:`Variant`.
        options: launch/compile options (``num_warps``, ``enable_fp_fusion``, ...).
    """

    def __init__(self, jit: Any, types: Mapping[str, str | Sequence[str]],
                 constexprs: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> None:
        function = _python_function(jit)
        self.jit = jit
        self.name = function.__name__
        self.module = function.__module__
        self.options = dict(options)
        parameters = list(inspect.signature(function).parameters.values())
        self.arg_names = [p.name for p in parameters]
        self._arg_set = frozenset(self.arg_names)
        self.constexpr_names = [p.name for p in parameters if _is_constexpr(p)]
        self.runtime_names = [p.name for p in parameters if not _is_constexpr(p)]
        self.variants = tuple(
            Variant(tuple((name, values[name]) for name in self.constexpr_names),
                    tuple((name, chosen[name]) for name in self.runtime_names))
            for values in self._constexpr_rows(constexprs)
            for chosen in self._type_rows(types)
        )
        self._keys = frozenset(self._key(dict(v.constexprs), dict(v.types)) for v in self.variants)

    def _fail(self, message: str) -> None:
        raise TypeError(f"declare({self.module}.{self.name}): {message}")

    def _type_rows(self, types: Mapping[str, str | Sequence[str]]) -> list[dict[str, str]]:
        """Every choice of the alternatives, as ``{argument: type}``; names declared together choose together."""
        groups: list[tuple[list[str], tuple[str, ...]]] = []
        seen: set[str] = set()
        for names, choice in types.items():
            group = names.split()
            alternatives = (choice,) if isinstance(choice, str) else tuple(choice)
            if not group or not alternatives:
                self._fail(f"empty type entry {names!r}: {choice!r}")
            for name in group:
                if name not in self.runtime_names:
                    self._fail(f"types names {name!r}, which is not a non-constexpr parameter")
                if name in seen:
                    self._fail(f"types names {name!r} twice")
                seen.add(name)
            groups.append((group, alternatives))
        self._type_groups = [group for group, _ in groups]
        missing = [name for name in self.runtime_names if name not in seen]
        if missing:
            self._fail(f"types misses parameter(s) {', '.join(missing)}")
        return [{name: chosen for (group, _), chosen in zip(groups, row) for name in group}
                for row in itertools.product(*(alternatives for _, alternatives in groups))]

    def _constexpr_rows(self, constexprs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        rows = [dict(row) for row in constexprs]
        if not rows:
            self._fail("constexprs is empty (use [{}] for a kernel without constexprs)")
        for row in rows:
            if set(row) != set(self.constexpr_names):
                self._fail(f"constexprs row {row} must name exactly {self.constexpr_names}")
        return rows

    def _key(self, constexprs: Mapping[str, Any], types: Mapping[str, str]) -> tuple:
        return (tuple(constexprs[name] for name in self.constexpr_names),
                tuple(types[name] for name in self.runtime_names))

    def label(self, variant: Variant) -> str:
        """Short text for tables: the constexprs and argument types (one name per declared group)
        that differ between the variants."""
        def varying(field: str) -> set[str]:
            seen: dict[str, set] = {}
            for other in self.variants:
                for name, value in getattr(other, field):
                    seen.setdefault(name, set()).add(value)
            return {name for name, values in seen.items() if len(values) > 1}

        constexprs, types = varying("constexprs"), varying("types")
        parts = [f"{name}={int(value) if isinstance(value, bool) else value}"
                 for name, value in variant.constexprs if name in constexprs]
        firsts = {group[0] for group in self._type_groups}
        parts += [f"{name}:{kind}" for name, kind in variant.types if name in types and name in firsts]
        return " ".join(parts) or "-"

    def __getitem__(self, grid):
        return functools.partial(self._launch, grid)

    def _launch(self, grid, *args: Any, **kwargs: Any):
        if not self._arg_set.issuperset(kwargs):
            unknown = ", ".join(name for name in kwargs if name not in self._arg_set)
            raise TypeError(f"{self.name}: unknown argument(s) {unknown} "
                            "(launch options belong in the kernel's declaration)")
        values = dict(zip(self.arg_names, args))
        values.update(kwargs)
        if len(values) != len(self.arg_names):
            missing = ", ".join(name for name in self.arg_names if name not in values)
            raise TypeError(f"{self.name}: missing argument(s) {missing}")
        key = (tuple(values[name] for name in self.constexpr_names),
               tuple(_triton_type(values[name]) for name in self.runtime_names))
        if key not in self._keys:
            raise UndeclaredVariantError(
                f"{self.module}.{self.name} launched with an undeclared variant: constexprs "
                f"{dict(zip(self.constexpr_names, key[0]))}, types {dict(zip(self.runtime_names, key[1]))}; "
                "add it to the kernel's @declare so that render3d check-kernels compiles it")
        return self.jit[grid](*args, **kwargs, **self.options)


_TENSOR_TYPES: dict[Any, str] = {}


def _triton_type(value: Any) -> str:
    """Triton's type for a launch argument (its own mangling; a tensor's depends only on its dtype,
    so that is looked up once per dtype: the check costs a few microseconds a launch)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "data_ptr"):
        return mangle_type(value)
    kind = _TENSOR_TYPES.get(dtype)
    if kind is None:
        kind = _TENSOR_TYPES[dtype] = mangle_type(value)
    return kind


def declare(*, types: Mapping[str, str | Sequence[str]], constexprs: Sequence[Mapping[str, Any]] = ({},),
            options: Mapping[str, Any] | None = None):
    """Decorator over ``@triton.jit``: the kernel's variants (see the module docstring).

    Args:
        types: ``{"name1 name2": type or [alternatives]}`` for every non-constexpr parameter,
            in Triton's spelling (``*fp32`` a float32 tensor, ``*i64``, ``*u8``, ``*u1`` a bool
            tensor; ``i32``/``i64`` a Python int, ``fp32`` a float, ``u1`` a bool). Names in one
            entry take the same alternative; separate entries multiply.
        constexprs: one dict per constexpr combination, each naming every constexpr
            parameter (:func:`product` builds the full grid; filter it with a comprehension).
        options: launch options given to every launch and compile (``num_warps``, ...).
    """
    def wrap(jit: Any) -> DeclaredKernel:
        return DeclaredKernel(jit, types, constexprs, options or {})

    return wrap
