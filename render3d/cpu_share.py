"""Sharing the CPU with other work while a fit runs: torch's thread count follows the cores that
other processes leave free, checked every few seconds.

On 2 cores, OpenMP's threads spin while they wait (its default policy), so a fit and another
busy process slow each other 4.7x; ``OMP_WAIT_POLICY=PASSIVE`` avoids that but costs a fit
that has the cores to itself 1.7x, and it is read once, when torch starts, so a fit started on
a busy machine kept paying it after the other work ended (benchmarks/RESULTS.md, "OpenMP wait
policy"). The thread count can change at any time: one thread per core left free never spins
against the other work, and a fit gets all its threads back as soon as the cores are free.

"Other work" is the number of runnable threads in ``/proc/loadavg`` less this process's own
runnable threads (``/proc/self/task/*/stat``), the fewest of a few samples; where those files
cannot be read (not Linux) nothing changes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def runnable_threads(proc_loadavg: str = "/proc/loadavg", tasks: str = "/proc/self/task") -> tuple[int, int] | None:
    """``(runnable threads on the machine, runnable threads of this process)``, or None where
    ``/proc`` cannot be read."""
    try:
        total = int(Path(proc_loadavg).read_text().split()[3].split("/")[0])
        own = 0
        for stat in Path(tasks).glob("*/stat"):
            try:
                own += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                continue  # the thread ended between the listing and the read
    except (OSError, IndexError, ValueError):
        return None
    return total, own


def other_busy_threads(samples: int = 3, interval: float = 0.005, **paths) -> int | None:
    """The fewest runnable threads seen outside this process in ``samples`` reads ``interval``
    seconds apart (a busy process is runnable in every read, a short blip is not), or None
    where ``/proc`` cannot be read."""
    seen = []
    for index in range(samples):
        counts = runnable_threads(**paths)
        if counts is None:
            return None
        seen.append(max(counts[0] - counts[1], 0))
        if index + 1 < samples:
            time.sleep(interval)
    return min(seen)


def busy_machine_note(**paths) -> str | None:
    """One line for a command about to fit when other work keeps at least one core busy (the
    1-minute load average and the threads other processes keep runnable now both say so), else
    None: its steps run slower, so a time-budgeted fit takes fewer of them. ``paths`` as for
    :func:`runnable_threads`."""
    cores = os.cpu_count() or 1
    others = other_busy_threads(samples=5, interval=0.02, **paths)
    busy = min(os.getloadavg()[0], others or 0)
    if busy < 1:
        return None
    return (f"note: other processes keep about {min(busy, cores):.0f} of this machine's {cores} cores busy: "
            f"steps run slower, so a time-budgeted fit takes fewer of them (and a fixed step count takes longer)")


class ThreadShare:
    """Sets ``torch.set_num_threads`` to the cores other work leaves free (at least 1, at most
    the count it started with), at most every ``every`` seconds.

    Args:
        every: seconds between checks (a check costs about ``samples * interval`` seconds).
        cores: the machine's cores (default ``os.cpu_count()``).
        busy: returns the runnable threads of other processes, or None (default
            :func:`other_busy_threads`).
    """

    def __init__(self, every: float = 5.0, cores: int | None = None, busy=other_busy_threads) -> None:
        self.every = every
        self.cores = cores or os.cpu_count() or 1
        self.busy = busy
        self.max_threads = torch.get_num_threads()
        self.changes = 0
        self._next = 0.0

    def update(self, now: float) -> int:
        """Check (when due at ``now``, seconds on any clock) and set the thread count; returns it."""
        if now >= self._next:
            self._next = now + self.every
            others = self.busy()
            if others is not None:
                threads = max(1, min(self.max_threads, self.cores - others))
                if threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                    self.changes += 1
        return torch.get_num_threads()

    def restore(self) -> None:
        """The thread count it started with."""
        if torch.get_num_threads() != self.max_threads:
            torch.set_num_threads(self.max_threads)
