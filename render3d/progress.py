"""Progress bars with ETA and live metrics for long work (fitting, rendering, evaluation)."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int, description: str, enabled: bool = True, unit: str = "step") -> tqdm:
    """A tqdm bar on stderr; ``bar.set_postfix(loss=..., psnr=...)`` shows live metrics.

    With ``enabled=False`` the bar is silent but keeps the same interface.
    """
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
        smoothing=0.1,
    )


def format_metrics(metrics: dict[str, float]) -> dict[str, str]:
    """Compact strings for a bar's postfix (4 significant digits, PSNR in dB)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float):
            out[key] = f"{value:.2f}" if key == "psnr" else f"{value:.4g}"
        else:
            out[key] = str(value)
    return out
