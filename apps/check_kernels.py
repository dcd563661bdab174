"""``render3d check-kernels``: compile every declared Triton kernel variant for real GPUs, ahead of time.

Triton compiles without a device: ``triton.compile(ASTSource(fn, signature, constexprs),
target=GPUTarget("cuda", arch, 32))`` runs the whole pipeline down to ``ptxas`` (shipped with
Triton) and gives PTX and a cubin. The variants are the ones each kernel declares with
:func:`render3d.kernels._variants.declare`, which its launcher is held to. Every compile runs in
a worker process without ``TRITON_INTERPRET`` (under the interpreter ``@triton.jit`` gives an
object that cannot compile) and with ``ptxas -v``'s log captured, for registers and spills.
Compiled kernels go to Triton's cache as usual and their ptxas figures next to it
(``<cache>/render3d-ptxas``), so a second run of unchanged kernels takes seconds.

A check fails on: a compile error (frontend, LLVM or ``ptxas``), dynamic shared memory above
the architecture's per-block limit, or a ``@triton.jit`` function of a kernel module that no
declared kernel reaches (a kernel that was never declared).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import io
import os
import pkgutil
import re
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context

from render3d.errors import ConfigError

KERNEL_PACKAGE = "render3d.kernels"
DEFAULT_ARCHS = (80, 90)
# Largest shared memory one block may opt into, bytes (CUDA C++ Programming Guide, per compute capability).
SHARED_LIMIT = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448, 100: 232448, 120: 101376}

_PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


@dataclass
class Job:
    """One compile: a declared variant of a kernel for one architecture."""

    module: str
    kernel: str
    index: int
    variant: str
    arch: int


@dataclass
class Result:
    """What one compile gave: resources on success, the error otherwise."""

    module: str
    kernel: str
    variant: str
    arch: int
    ok: bool
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    stack_bytes: int | None = None
    shared_bytes: int | None = None
    num_warps: int | None = None
    seconds: float = 0.0
    cached: bool = False
    error: str = ""


def kernel_modules(names: list[str] | None = None) -> list[str]:
    """Every module of the kernel package (the declaration module excluded), or ``names``."""
    if names:
        return list(names)
    package = importlib.import_module(KERNEL_PACKAGE)
    return [f"{KERNEL_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
            if info.name != "_variants"]


def declared_kernels(module) -> list:
    """The module's declared kernels, in definition order."""
    from render3d.kernels._variants import DeclaredKernel

    return [value for value in vars(module).values()
            if isinstance(value, DeclaredKernel) and value.module == module.__name__]


def _is_jit(value) -> bool:
    return type(value).__name__ in ("JITFunction", "InterpretedFunction")


def _reached(function, seen: set[int]) -> None:
    """Add to ``seen`` the ids of the Triton functions that ``function``'s source names, transitively."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for name in names:
        value = function.__globals__.get(name)
        if _is_jit(value) and id(value) not in seen:
            seen.add(id(value))
            _reached(value.fn, seen)


def undeclared_kernels(module) -> list[str]:
    """Names of the module's ``@triton.jit`` functions that no declared kernel reaches."""
    seen: set[int] = set()
    for kernel in declared_kernels(module):
        seen.add(id(kernel.jit))
        _reached(kernel.jit.fn, seen)
    return [name for name, value in vars(module).items()
            if _is_jit(value) and value.fn.__module__ == module.__name__ and id(value) not in seen]


def plan(modules: list[str], archs: list[int], kernel_filter: str | None = None) -> tuple[list[Job], list[str]]:
    """The compile jobs and the problems found without compiling (undeclared kernels)."""
    jobs: list[Job] = []
    problems: list[str] = []
    try:
        pattern = re.compile(kernel_filter) if kernel_filter else None
    except re.error as error:
        raise ConfigError(f"--kernel: {kernel_filter!r} is not a regular expression ({error})") from None
    for name in modules:
        short = name.rsplit(".", 1)[-1]
        try:
            module = importlib.import_module(name)
        except Exception as error:  # a broken kernel module fails the check, it does not end it
            problems.append(f"{short}: import failed: {type(error).__name__}: {error}")
            continue
        for kernel_name in undeclared_kernels(module):
            problems.append(f"{short}.{kernel_name}: @triton.jit function reached by no declared kernel "
                            "(declare it with @declare, see render3d.kernels._variants)")
        for kernel in declared_kernels(module):
            if pattern and not pattern.search(f"{short}.{kernel.name}"):
                continue
            for index, variant in enumerate(kernel.variants):
                for arch in archs:
                    jobs.append(Job(name, kernel.name, index, kernel.label(variant), arch))
    return jobs, problems


def _worker_setup() -> None:
    """Worker processes compile for real targets: no interpreter, ptxas log printed (and captured)."""
    import warnings

    os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    # Compile with the same default as a launch; the notice that it will change is not a result.
    warnings.filterwarnings("ignore", message=".*TRITON_DEFAULT_FP_FUSION")


def _ptxas_figures(log: str) -> dict[str, int] | None:
    """Registers, stack and spill bytes from a ``ptxas -v`` log (None when it has no report)."""
    registers = _PTXAS_REGISTERS.search(log)
    spills = _PTXAS_SPILLS.search(log)
    if not (registers and spills):
        return None
    stack, stores, loads = (int(group) for group in spills.groups())
    return {"registers": int(registers.group(1)), "stack_bytes": stack, "spill_stores": stores, "spill_loads": loads}


def _compile(source, arch: int, options: dict, always: bool):
    """``triton.compile`` for ``sm_<arch>``; returns the kernel and the captured ptxas log."""
    import contextlib

    import triton
    from triton.backends.compiler import GPUTarget

    os.environ["TRITON_ALWAYS_COMPILE"] = "1" if always else "0"
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(options))
    return compiled, log.getvalue()


def compile_job(job: Job) -> Result:
    """Compile one job (in a worker process set up by :func:`_worker_setup`)."""
    import json

    import triton
    from triton.compiler import ASTSource

    kernel = next(k for k in declared_kernels(importlib.import_module(job.module)) if k.name == job.kernel)
    variant = kernel.variants[job.index]
    types = dict(variant.types)
    constexprs = dict(variant.constexprs)
    signature = {name: types.get(name, "constexpr") for name in kernel.arg_names}
    # Tensors from PyTorch's allocator are 16-byte aligned; the launcher specialises on that too.
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
             if types.get(name, "").startswith("*")}
    result = Result(job.module.rsplit(".", 1)[-1], job.kernel, job.variant, job.arch, ok=False)
    source = ASTSource(kernel.jit, signature, constexprs, attrs)
    start = time.perf_counter()
    try:
        compiled, log = _compile(source, job.arch, kernel.options, always=False)
        figures = _ptxas_figures(log)
        saved = os.path.join(triton.knobs.cache.dir, "render3d-ptxas", f"{compiled.metadata.hash}.json")
        if figures is None and os.path.exists(saved):  # Triton's cache held the kernel: ptxas did not run
            with open(saved) as file:
                figures = json.load(file)
            result.cached = True
        elif figures is None:
            compiled, log = _compile(source, job.arch, kernel.options, always=True)
            figures = _ptxas_figures(log)
        if figures is not None and not result.cached:
            from render3d.io.atomic import atomic_write_json

            os.makedirs(os.path.dirname(saved), exist_ok=True)
            atomic_write_json(saved, figures)
    except Exception as error:  # every compiler stage has its own exception type
        result.error = f"{type(error).__name__}: {error}".strip()
        result.seconds = time.perf_counter() - start
        return result
    result.seconds = time.perf_counter() - start
    result.shared_bytes = int(compiled.metadata.shared)
    result.num_warps = int(compiled.metadata.num_warps)
    limit = SHARED_LIMIT[job.arch]
    if figures is None:
        result.error = "no register/spill report in the ptxas log"
        return result
    for name, value in figures.items():
        setattr(result, name, value)
    if result.shared_bytes > limit:
        result.error = f"needs {result.shared_bytes} bytes of shared memory, sm_{job.arch} allows {limit}"
    else:
        result.ok = True
    return result


def run_jobs(jobs: list[Job], workers: int) -> list[Result]:
    """Compile every job in ``workers`` fresh processes (spawned, so the environment is theirs)."""
    if not jobs:
        return []
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn"),
                             initializer=_worker_setup) as pool:
        return list(pool.map(compile_job, jobs))


def parse_archs(text: str) -> list[int]:
    """``80,90`` -> ``[80, 90]``; every architecture must have a known shared-memory limit."""
    try:
        archs = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--arch: {text!r} is not a comma-separated list of compute capabilities like 80,90")
    unknown = [arch for arch in archs if arch not in SHARED_LIMIT]
    if not archs or unknown:
        raise ConfigError(f"--arch: {text!r}: choose from {', '.join(map(str, SHARED_LIMIT))}")
    return archs


def _spills(result: Result) -> str:
    return f"{result.spill_stores}/{result.spill_loads}"


def format_table(results: list[Result]) -> str:
    """One line per compile: kernel, variant, arch, shared memory, registers, spills (bytes stored/loaded)."""
    header = ("kernel", "variant", "arch", "shared B", "regs", "spill B st/ld", "s")
    rows = [(f"{r.module}.{r.kernel}", r.variant, f"sm_{r.arch}",
             str(r.shared_bytes) if r.shared_bytes is not None else "-",
             str(r.registers) if r.registers is not None else "-",
             _spills(r) if r.spill_stores is not None else "-",
             f"{r.seconds:.1f}" if r.ok else "FAILED") for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def _first_lines(text: str, count: int = 12) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:count] + ([f"... ({len(lines) - count} more lines)"] if len(lines) > count else []))


def check(archs: list[int], modules: list[str] | None = None, kernel_filter: str | None = None,
          workers: int | None = None, out=None) -> tuple[list[Result], list[str], float]:
    """Plan, compile and print (to ``out``, default stdout); returns the results, the failures (one
    line each) and the wall time."""
    out = out or sys.stdout
    start = time.perf_counter()
    jobs, problems = plan(kernel_modules(modules), archs, kernel_filter)
    if kernel_filter and not jobs:
        raise ConfigError(f"--kernel: {kernel_filter!r} matches no declared kernel")
    results = run_jobs(jobs, workers or os.cpu_count() or 1)
    elapsed = time.perf_counter() - start
    print(format_table(results), file=out)
    failures = list(problems)
    for result in results:
        if not result.ok:
            failures.append(f"{result.module}.{result.kernel} [{result.variant}] sm_{result.arch}: "
                            f"{_first_lines(result.error)}")
    passed = sum(r.ok for r in results)
    cached = sum(r.cached for r in results)
    kernels = len({(r.module, r.kernel) for r in results})
    print(f"\n{passed}/{len(results)} variant compiles passed ({kernels} kernel{'s' * (kernels != 1)}, archs {','.join(f'sm_{a}' for a in archs)}; {cached} from Triton's cache) in {elapsed:.1f} s",
          file=out)
    for failure in failures:
        print(f"FAILED {failure}", file=out)
    return results, failures, elapsed


def cmd_check_kernels(args: argparse.Namespace) -> int:
    """The command: exit status 1 when any compile or declaration check fails."""
    archs = parse_archs(args.arch)
    if args.json:
        from render3d.io.writable import check_writable

        check_writable(args.json, "--json")
    results, failures, elapsed = check(archs, args.module, args.kernel, args.jobs)
    if args.json:
        from render3d.io.atomic import atomic_write_json

        atomic_write_json(args.json, {"archs": archs, "seconds": elapsed, "failures": failures,
                                      "results": [asdict(result) for result in results]})
    return 1 if failures else 0


def add_arguments(parser: argparse.ArgumentParser, positive_int) -> None:
    """The command's options (registered by :mod:`render3d.apps.cli`)."""
    parser.add_argument("--arch", default=",".join(map(str, DEFAULT_ARCHS)),
                        help="compute capabilities to compile for, e.g. 80,90,100 (default 80,90)")
    parser.add_argument("--json", help="also write every result to this JSON file")
    parser.add_argument("--kernel", help="only kernels whose module.name matches this regular expression")
    parser.add_argument("--module", action="append",
                        help="check this module instead of every render3d.kernels module (repeatable)")
    parser.add_argument("--jobs", type=positive_int, help="compile processes (default: one per CPU)")
