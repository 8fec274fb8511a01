"""The figures of ``flowforge compare``: samples side by side, and validation curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["plot_curves", "plot_samples"]


def plot_samples(samples: dict[str, torch.Tensor], data: torch.Tensor, path: Path) -> Path:
    """One panel per model: for vectors a scatter of the first two coordinates over the data's
    box; for square images (at least 8 x 8 pixels, flattened or not) a 4 x 4 grid."""
    panels = {"data (test)": data, **samples}
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2), squeeze=False)
    flat = data.reshape(len(data), -1)
    lo, hi = flat.quantile(0.001, 0), flat.quantile(0.999, 0)
    for ax, (name, x) in zip(axes[0], panels.items(), strict=True):
        x = x.reshape(len(x), -1).float()
        side = int(round(x.shape[1] ** 0.5))
        if side < 8 or side * side != x.shape[1]:
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
            ax.set_xlim(float(lo[0]), float(hi[0]))
            ax.set_ylim(float(lo[1]), float(hi[1]))
            if x.shape[1] > 2:
                ax.set_xlabel(f"x1 (of {x.shape[1]})", fontsize=8)
                ax.set_ylabel("x2", fontsize=8)
        else:
            imgs = x[:16].reshape(-1, side, side)
            imgs = torch.cat([imgs, torch.zeros(16 - len(imgs), side, side)])
            grid = imgs.reshape(4, 4, side, side).permute(0, 2, 1, 3).reshape(4 * side, 4 * side)
            ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> Path:
    """Each model's validation metric against the step, one line per seed: ``curves`` maps a
    model's label to the metrics records of each of its runs (a panel per label, empty when
    none of its runs finished)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3), squeeze=False)
    for ax, (label, runs) in zip(axes[0], curves.items(), strict=True):
        for run in runs:
            records = [x for x in run if "event" not in x]
            key = next((k for k in records[0] if k.startswith("val_") and k != "val_stderr"), None)
            if key:
                ax.plot([x["step"] for x in records], [x[key] for x in records], lw=1)
                ax.set_ylabel(key, fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
