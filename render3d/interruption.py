"""Stopping a fit cleanly on Ctrl-C (SIGINT) or SIGTERM.

While a fit with a run directory trains, :class:`StopSignals` turns the first SIGINT or SIGTERM
into a request that the training loop reads after the current step: it writes a checkpoint and
raises :class:`FitInterrupted` (a ``KeyboardInterrupt``). A second signal stops at once, as
Python's default handler does, keeping the last checkpoint written.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class FitInterrupted(KeyboardInterrupt):
    """A fit stopped by a signal after writing ``checkpoint`` at ``step`` of ``steps``."""

    def __init__(self, run_dir: Path, checkpoint: Path, step: int, steps: int, signal_name: str) -> None:
        super().__init__(f"{signal_name} at step {step} of {steps}; checkpoint: {checkpoint}")
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.step = step
        self.steps = steps
        self.signal_name = signal_name


class StopSignals:
    """Context manager: ``requested`` becomes the signal's name (``"SIGINT"``) once one arrives.

    Handlers are installed only when ``enabled`` and in the main thread (Python delivers
    signals there only); the previous handlers are restored on exit.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        self.requested = None
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _handle(self, signum: int, frame) -> None:
        if self.requested is not None:  # asked twice: stop now
            self._restore()
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
