"""The figure of a run on a series (:mod:`flowforge.data.series`): ``forecast``, a fan chart.

For each of the series (the first four), the values observed before a forecast origin near
the end of the test split, then the flow's forecast over the next steps: the median and the
50% and 90% bands of :data:`PATHS` ancestral sample paths
(:func:`~flowforge.forecast.paths.sample_paths`), with the values that came. A series of
differences or log returns is drawn summed from the origin (the level, or the percent log
price, relative to the origin's), where a forecast's spread shows as a fan. Drawn with a
fixed seed, so the same run gives the same figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowforge.data import Splits
from flowforge.flows import Flow
from flowforge.forecast import sample_paths
from flowforge.viz.run_figures import plt, save_figure

__all__ = ["PATHS", "plot_forecast_fan"]

PATHS = 500  # sample paths behind the bands
SHOWN = 4  # series drawn, at most


def plot_forecast_fan(
    model: Flow, data: Splits, out: Path, steps: int = 20, before: int = 40, seed: int = 0
) -> list[Path]:
    """``forecast``: ``steps`` steps forecast from the origin ``steps`` rows before the end of
    the test split, after ``before`` observed values (validation and test targets)."""
    observed = torch.cat([data.val, data.test]).double().numpy()  # consecutive values
    steps = max(1, min(steps, len(data.test) - 1))
    origin = len(observed) - steps
    k = int(data.info["window"])
    history = data.test_context[-steps].reshape(k, -1)  # the window before the origin
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        paths = sample_paths(model, history, steps, PATHS).double().cpu().numpy()  # (S, H, D)
    start = max(0, origin - before)
    past, came = observed[start:origin], observed[origin:]
    summed = data.info.get("transform") in ("diff", "log_return")
    if summed:  # levels relative to the origin's: 0 at the origin
        past = past - np.cumsum(past[::-1], 0)[::-1]  # minus the increments after each step
        came, paths = np.cumsum(came, 0), np.cumsum(paths, 1)
    low5, low25, mid, high75, high95 = np.percentile(paths, [5, 25, 50, 75, 95], axis=0)
    names = list(data.info.get("features", []))
    shown = min(SHOWN, paths.shape[-1])
    t_past = np.arange(start, origin) - origin + 1
    t_next = np.arange(1, steps + 1)
    fig, axes = plt.subplots(shown, 1, figsize=(7, 1.9 * shown + 0.5), squeeze=False, sharex=True)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t_past, past[:, i], color="black", lw=1, label="observed")
        ax.plot(t_next, came[:, i], color="black", lw=1, ls=":", label="what came")
        ax.fill_between(t_next, low5[:, i], high95[:, i], color="C1", alpha=0.25, label="90%")
        ax.fill_between(t_next, low25[:, i], high75[:, i], color="C1", alpha=0.45, label="50%")
        ax.plot(t_next, mid[:, i], color="C1", lw=1.2, label="median")
        ax.axvline(0.5, color="grey", lw=0.8)
        name = names[i] if i < len(names) else f"x{i}"
        ax.set_ylabel(f"{name}, summed" if summed else name, fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper left")
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    fig.suptitle(
        f"forecast from {k} observed steps: median, 50% and 90% bands of {PATHS} sample paths",
        fontsize=9,
    )
    return save_figure(fig, out, "forecast")
