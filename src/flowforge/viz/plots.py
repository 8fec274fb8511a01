"""A 2-D flow's density drawn on an axis; the figures of runs are in
:mod:`flowforge.viz.run_figures`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from flowforge.flows import Flow  # noqa: E402

__all__ = ["plot_density"]


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
