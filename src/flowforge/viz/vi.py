"""Figure 3 of Rezende and Mohamed (2015, https://arxiv.org/abs/1505.05770) for any flows:
a grid with one row per target, its true density first, then each fitted ``q`` as a
histogram of its samples on the target's box."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from flowforge.flows import Flow  # noqa: E402
from flowforge.targets import Target  # noqa: E402

__all__ = ["plot_vi_grid"]


@torch.no_grad()
def plot_vi_grid(
    targets: Sequence[Target],
    flows: Mapping[tuple[str, str], Flow],
    columns: Sequence[str],
    path: str | Path,
    kls: Mapping[tuple[str, str], float] | None = None,
    box: float = 4.0,
    n_samples: int = 100000,
    bins: int = 100,
) -> Path:
    """Writes the grid to ``path`` (PNG) and returns it.

    Arguments:
        targets: one row each (2-D targets).
        flows: the fitted ``q`` of each ``(target.name, column)``; missing cells stay blank.
        columns: the column (flow) names, in order.
        path: output file.
        kls: optional ``KL(q || p)`` per cell, written in its title.
        box: half-width of the square plotted (the paper: 4).
        n_samples: samples per histogram.
        bins: histogram bins per axis.
    """
    if not targets or not columns:
        raise ValueError("'targets' and 'columns' should be non-empty")
    rows, cols = len(targets), len(columns) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows), squeeze=False)
    g = torch.linspace(-box, box, 300)
    zz = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    extent = (-box, box, -box, box)
    for i, target in enumerate(targets):
        density = target(zz.double()).exp().reshape(300, 300).float()
        axes[i, 0].imshow(density, origin="lower", extent=extent, cmap="viridis")
        axes[i, 0].set_ylabel(target.name)
        for j, name in enumerate(columns, start=1):
            flow = flows.get((target.name, name))
            if flow is not None:
                x = flow.sample(n_samples).float()
                axes[i, j].hist2d(
                    x[:, 0].numpy(),
                    x[:, 1].numpy(),
                    bins=bins,
                    range=[[-box, box]] * 2,
                    cmap="viridis",
                )
            kl = None if kls is None else kls.get((target.name, name))
            title = name if kl is None else f"{name}\nKL {kl:.3f}"
            if i == 0 or kl is not None:
                axes[i, j].set_title(title, fontsize=8)
        axes[0, 0].set_title("target", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
