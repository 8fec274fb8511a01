"""Small plotting helpers for 2-D flows (a density on an axis, NLL curves); the figures of
runs are in :mod:`flowforge.viz.run_figures`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from flowforge.data.registry import Splits  # noqa: E402
from flowforge.flows import Flow  # noqa: E402

__all__ = ["plot_2d_run", "plot_curves", "plot_density"]


def _box(x: torch.Tensor, margin: float = 0.1) -> tuple[float, float, float, float]:
    lo, hi = x.quantile(0.001, dim=0), x.quantile(0.999, dim=0)
    pad = (hi - lo) * margin
    return (
        float(lo[0] - pad[0]),
        float(hi[0] + pad[0]),
        float(lo[1] - pad[1]),
        float(hi[1] + pad[1]),
    )


def plot_density(
    flow: Flow,
    box: tuple[float, float, float, float],
    ax: plt.Axes,
    n: int = 200,
    context: torch.Tensor | None = None,
) -> None:
    """Draws ``exp(log_prob)`` of a 2-D flow on an ``n x n`` grid over ``box``."""
    x0, x1, y0, y1 = box
    xs, ys = torch.linspace(x0, x1, n), torch.linspace(y0, y1, n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    device = next((b.device for b in flow.buffers()), torch.device("cpu"))
    with torch.no_grad():
        c = None if context is None else context.reshape(1, -1).expand(len(pts), -1).to(device)
        dens = flow.log_prob(pts.to(device), c).exp().cpu().reshape(n, n)
    ax.imshow(dens, origin="lower", extent=box, aspect="auto", cmap="viridis")


def plot_curves(records: list[dict], ax: plt.Axes) -> None:
    """Training and validation NLL against steps, from a run's metrics records."""
    records = [r for r in records if "val_nll" in r]
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["train_nll"] for r in records], label="train")
    ax.plot(steps, [r["val_nll"] for r in records], label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats)")
    ax.legend()


def plot_2d_run(flow: Flow, splits: Splits, out: Path, records: list[dict]) -> list[Path]:
    """The figures of a 2-D maximum-likelihood run (:func:`flowforge.viz.run_figures.plot_flow_2d`
    and its curves) in the folder ``out``; returns the files written."""
    from flowforge.viz.run_figures import plot_flow_2d, plot_training_curves

    files = plot_flow_2d(flow, splits.test, Path(out), splits.test_context)
    return files + plot_training_curves(records, Path(out), "nll", "train_nll", splits.entropy)
