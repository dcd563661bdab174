"""Fitting to a wall-clock budget: how many steps fit in the time that is left.

:class:`StepBudget` watches the seconds per step while a fit runs and sets the fit's total
step count so that it ends within the budget. Methods scale their whole schedule (learning
rate decay, densification, SH degree, resets) with the total (``Method.set_total_steps``),
so a shorter budget gives a complete, compressed schedule rather than a truncated one.

- After ``warmup`` steps (at least 2 % of the budget), the rate of the steps so far fixes a
  first total.
- Every ``recheck`` of the budget it is re-estimated from the most recent steps only, because
  steps usually slow down as a fit goes on (more Gaussians, larger ray batches); the total
  only changes by more than 1 %, so the schedule does not jitter.
- ``reserve`` seconds are kept for the final checkpoint.
"""
from __future__ import annotations

import math
import re

from render3d.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1.5h"`` (a bare number is seconds).

    Raises:
        ConfigError: not a positive finite duration (names ``time_budget``).
    """
    if isinstance(value, bool):
        seconds = math.nan
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(value).lower())
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"time_budget must be a positive duration such as 90s, 10m or 1.5h, got {value!r}")
    return seconds


class StepBudget:
    """Chooses a fit's total steps so that it ends within ``seconds``.

    Args:
        seconds: the budget for the fitting steps (evaluation afterwards is not included).
        planned_steps: the total before any timing is known (the preset's).
        warmup: steps to time before the first estimate.
        recheck: fraction of the budget between re-estimates.
        reserve: seconds kept free for the final checkpoint.
    """

    def __init__(self, seconds: float, planned_steps: int, *, warmup: int = 10, recheck: float = 0.05,
                 reserve: float = 2.0):
        self.seconds = seconds
        self.total = max(int(planned_steps), 1)
        self.warmup = warmup
        self.recheck = recheck
        self.reserve = min(reserve, 0.05 * seconds)
        self._mark: tuple[int, float] | None = None  # (steps, seconds) where the current window began
        self._next_check = 0.0

    def update(self, done: int, elapsed: float) -> int:
        """After ``done`` steps and ``elapsed`` seconds of fitting: the total steps to run (>= done)."""
        if self._mark is None:
            if done >= self.warmup and elapsed >= 0.02 * self.seconds:
                self._set_total(done, elapsed, elapsed / done)
                self._mark = (done, elapsed)
                self._next_check = elapsed + self.recheck * self.seconds
            return max(self.total, done) if elapsed < self.seconds - self.reserve else done
        if elapsed >= self._next_check:
            window_steps, window_seconds = done - self._mark[0], elapsed - self._mark[1]
            if window_steps > 0:
                self._set_total(done, elapsed, window_seconds / window_steps)
            self._mark = (done, elapsed)
            self._next_check = elapsed + self.recheck * self.seconds
        if elapsed >= self.seconds - self.reserve:
            return done  # out of time: stop now
        return max(self.total, done + 1)

    def _set_total(self, done: int, elapsed: float, seconds_per_step: float) -> None:
        remaining = self.seconds - self.reserve - elapsed
        total = done + max(int(remaining / max(seconds_per_step, 1e-9)), 0)
        if abs(total - self.total) > 0.01 * self.total:
            self.total = max(total, done)
