"""Plots of 2-D runs: learned density beside the data, samples, latents, training curves."""

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
    """Writes ``density.png``, ``samples.png``, ``latent.png`` and ``curves.png`` (from the
    metrics ``records``) into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    flow.eval()
    data = splits.test[:5000]
    context = None if splits.test_context is None else splits.test_context[:5000]
    box = _box(data)
    device = next((b.device for b in flow.buffers()), torch.device("cpu"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=150, range=[box[:2], box[2:]])
    axes[0].set_title("data (test)")
    # a conditional flow is drawn at the context of the first test point
    plot_density(flow, box, axes[1], context=None if context is None else context[0])
    axes[1].set_title("learned density")

    def save(fig: plt.Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)

    save(fig, "density.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    with torch.no_grad():
        c = None if context is None else context.to(device)
        xs = flow.sample(len(data), c).cpu().numpy()
        zs = flow.transform_to_latent(data.to(device), c).cpu().numpy()
    ax.scatter(xs[:, 0], xs[:, 1], s=1, alpha=0.5)
    ax.set_xlim(*box[:2])
    ax.set_ylim(*box[2:])
    ax.set_title("samples")
    save(fig, "samples.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(zs[:, 0], zs[:, 1], s=1, alpha=0.5, c=data[:, 0].numpy(), cmap="coolwarm")
    ax.set_title("test data mapped to latent space")
    ax.set_aspect("equal")
    save(fig, "latent.png")
    if records:
        fig, ax = plt.subplots(figsize=(6, 4))
        plot_curves(records, ax)
        save(fig, "curves.png")
    return sorted(out.glob("*.png"))
