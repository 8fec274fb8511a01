"""Plots a run trained on ``moons_conditional``: per moon label, the true conditional density,
the model's density and model samples.

    python scripts/plot_conditional_moons.py RUN_DIR OUT.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from flowforge.data.known import moons_conditional_log_prob
from flowforge.runs import open_run
from flowforge.runs.build import load_data
from flowforge.viz.plots import plot_density

BOX = (-3.5, 3.5, -2.0, 2.5)


def main(run_dir: str, out: str) -> None:
    run = open_run(run_dir)
    cfg, splits, flow = run.config, load_data(run.config), run.model()
    if splits.context_features != 2:
        raise SystemExit(f"{run_dir} was not trained on moons_conditional")
    fig, axes = plt.subplots(2, 3, figsize=(11, 7))
    n = 200
    xs, ys = np.linspace(BOX[0], BOX[1], n), np.linspace(BOX[2], BOX[3], n)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    torch.manual_seed(0)
    for label in (0, 1):
        context = torch.nn.functional.one_hot(torch.tensor(label), 2).float()
        true = np.exp(moons_conditional_log_prob(pts, np.full(len(pts), label))).reshape(n, n)
        axes[label, 0].imshow(true, origin="lower", extent=BOX, aspect="auto", cmap="viridis")
        axes[label, 0].set_title(f"true p(x | moon {label})")
        plot_density(flow, BOX, axes[label, 1], n=n, context=context)
        axes[label, 1].set_title(f"{cfg.model.name}: p(x | moon {label})")
        samples = flow.sample(2000, context).numpy()
        axes[label, 2].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
        axes[label, 2].set_xlim(BOX[:2])
        axes[label, 2].set_ylim(BOX[2:])
        axes[label, 2].set_title(f"samples given moon {label}")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
