"""Data-parallel training on ``torch.distributed``: what a method asks to train one scene on
several processes (NCCL between GPUs, gloo between CPU processes).

Every rank holds every parameter, draws the same random numbers (the fit's seed) and so makes
the same global choices (views, rays, densification); it computes the loss of its own share of
the global batch, scaled by the global batch size, and the gradients are summed over the ranks
before each optimiser step, so that N ranks with a global batch B compute what one process with
batch B computes. Methods ask the :class:`DataParallel` context in ``self.parallel``; with one
process (:data:`SINGLE_PROCESS`, the default) every call returns at once and changes nothing.

Only collectives that gloo supports are used (``all_reduce``), so that CI tests it on the CPU.

Where this stops: every rank holds every Gaussian (or the whole field), so memory does not
scale with the ranks. The next step, Gaussian-wise sharding with pixel-wise rendering
(Grendel-GS), keeps the Gaussians in :mod:`render3d.methods._splat_params`' row-wise container
and moves rows between ranks with ``all_to_all_single``; see ``docs/design.md``.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from render3d.errors import ConfigError


@dataclass(frozen=True)
class DataParallel:
    """This process's place among ``world_size`` data-parallel ranks (rank 0 writes the run),
    and the ``device`` of its collectives' small tensors (CUDA for NCCL)."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Whether this rank writes checkpoints, logs and the run directory."""
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items of the global batch (the first
        ``n % world_size`` ranks take one more); ``slice(0, n)`` in one process."""
        size, extra = divmod(n, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (self.rank < extra))

    def check_divides(self, n: int, what: str) -> None:
        """ConfigError naming ``what`` unless ``n`` splits evenly over the ranks."""
        if n % self.world_size:
            raise ConfigError(f"{what} ({n}) must be a multiple of the number of processes ({self.world_size})")

    def sum_(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over the ranks, in place; returns it."""
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def sum(self, values: list[float]) -> list[float]:
        """The sums over the ranks of a few numbers (one collective)."""
        if self.world_size == 1:
            return list(values)
        return self.sum_(torch.tensor(values, dtype=torch.float64, device=self.device)).tolist()

    def maximum(self, values: list[float]) -> list[float]:
        """The maxima over the ranks of a few numbers (one collective), e.g. elapsed time and
        stop requests, so that every rank takes the same decision."""
        if self.world_size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return tensor.tolist()

    def from_main(self, tensor: Tensor) -> Tensor:
        """Rank 0's ``tensor`` on every rank. The ranks agree on all but its first dimension
        (another rank passes any tensor of that shape and dtype, e.g. ``[0, ...]``)."""
        if self.world_size == 1:
            return tensor
        count = int(self.sum([float(tensor.shape[0]) if self.is_main else 0.0])[0])
        shared = (tensor.to(self.device) if self.is_main
                  else torch.zeros(count, *tensor.shape[1:], dtype=tensor.dtype, device=self.device))
        torch.distributed.broadcast(shared, src=0)
        return shared.to(tensor.device)

    def sum_gradients(self, parameters: Iterable[Tensor]) -> None:
        """Sum the ``.grad`` of ``parameters`` over the ranks in one collective. A parameter
        without a gradient on some rank gets zeros there; one without a gradient on every rank
        keeps ``None`` (so the optimiser skips it, as in one process)."""
        if self.world_size == 1:
            return
        parameters = list(parameters)
        if not parameters:
            return
        device = parameters[0].device
        has_grad = self.sum_(torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device))
        reduced = [p for p, flag in zip(parameters, has_grad.tolist()) if flag > 0]
        for p in reduced:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not reduced:
            return
        flat = self.sum_(torch.cat([p.grad.reshape(-1) for p in reduced]))
        for p, part in zip(reduced, flat.split([p.numel() for p in reduced])):
            p.grad.copy_(part.view_as(p.grad))

    def synchronize(self) -> None:
        """Wait until every rank got here (an all-reduce of one number)."""
        self.sum([0.0])


SINGLE_PROCESS = DataParallel()


def current() -> DataParallel:
    """The context of the process group this process joined (``torch.distributed``'s default
    group), or :data:`SINGLE_PROCESS` when it joined none."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return SINGLE_PROCESS
    nccl = torch.distributed.get_backend() == "nccl"
    device = f"cuda:{torch.cuda.current_device()}" if nccl else "cpu"
    return DataParallel(torch.distributed.get_rank(), torch.distributed.get_world_size(), device)


def launched_world_size(environ=os.environ) -> int:
    """The number of processes ``torchrun`` (or ``render3d fit --nproc``) started, from
    ``WORLD_SIZE``; 1 when this process was started alone."""
    try:
        return max(1, int(environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {environ['WORLD_SIZE']!r}") from None


@contextlib.contextmanager
def process_group(device: str | None) -> Iterator[DataParallel]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``) for the block and leave
    it after: NCCL when ``device`` is CUDA (each rank on GPU ``LOCAL_RANK``), gloo otherwise.
    Without such an environment the block runs as :data:`SINGLE_PROCESS`.

    ``device`` is the fit's (``None``: CUDA when available).
    """
    if launched_world_size() == 1 or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        yield current()
        return
    if not torch.distributed.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if cuda and device is not None and torch.device(device).index is not None:
        raise ConfigError(f"--device {device} names one GPU, but each of the {launched_world_size()} processes "
                          f"trains on the GPU of its LOCAL_RANK: pass --device cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield current()
    finally:
        torch.distributed.destroy_process_group()


def run_processes(function, args: tuple, nproc: int, threads: int | None = None) -> int:
    """Run ``function(*args)`` in ``nproc`` new processes on this machine that describe one
    process group in their environment, as ``torchrun --nproc_per_node nproc`` does (``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), each with ``threads``
    CPU threads (default: the cores split between them); :func:`process_group` joins it.
    ``function`` returns an exit status.

    Returns the first non-zero exit status of the processes, else 0. A SIGINT reaching this
    process while they run (Ctrl-C reaches them too) is left to them: they checkpoint and stop.
    """
    import signal
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        processes = mp.start_processes(_rank_main, args=(nproc, port, threads, function, args), nprocs=nproc,
                                       join=False).processes
        for process in processes:  # all of them: a rank that failed makes the others fail soon
            process.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    statuses = [process.exitcode if process.exitcode >= 0 else 128 - process.exitcode for process in processes]
    return next((status for status in statuses if status), 0)


def _rank_main(rank: int, nproc: int, port: int, threads: int | None, function, args: tuple) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // nproc))
    status = function(*args)
    if status:
        raise SystemExit(status)
