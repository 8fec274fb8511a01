"""The figures every run draws into its ``plots/`` folder, for each kind of run.

Each figure is written twice: ``NAME.png`` at :data:`DPI` dots per inch and ``NAME.svg``, a
vector file whose dense layers (scatter clouds, density images) are embedded as pictures so it
stays small. Every axis is labelled with its unit; every density has a colour bar.

- :func:`plot_flow_2d`: a flow on 2-D data: ``data``, ``density`` (one panel per context for
  a conditional flow, each labelled), ``samples``, ``latent`` and ``layers`` (a grid pushed
  from data space to latent space layer by layer);
- :func:`plot_samples_2d`: any other model on 2-D data: samples beside the data;
- :func:`plot_vectors`: vector data of any dimension: ``pairs`` (data vs samples on a few
  dimensions) and ``marginals`` (one histogram per dimension);
- :func:`plot_images`: image data: ``samples`` (grids at several temperatures) beside the data;
- :func:`plot_target_fit`: variational inference: the target beside the fitted ``q``;
- :func:`plot_training_curves`: the training and validation curves of any objective, with the
  validation points marked and the true entropy where the data set knows it.

Everything is drawn from a few thousand points so a run's figures take a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from flowforge.flows import Flow  # noqa: E402
from flowforge.transforms import Compose, Transform  # noqa: E402

__all__ = [
    "DPI",
    "METRIC_UNITS",
    "flow_layers",
    "plot_flow_2d",
    "plot_images",
    "plot_samples_2d",
    "plot_target_fit",
    "plot_training_curves",
    "plot_vectors",
    "save_figure",
]

DPI = 150
# the unit of each validation metric (``val_<metric>``) on the curves' y axis
METRIC_UNITS = {
    "nll": "nats",
    "bpd": "bits/dim",
    "kl": "nats",
    "loss": "nats",
    "neg_elbo": "nats",
    "mmd": "squared MMD",
    "recon": "mean squared error",
}
SCATTER = 2000  # points in a scatter plot
GRID = 120  # density evaluations per axis


def save_figure(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Writes ``out/NAME.png`` (:data:`DPI`) and ``out/NAME.svg``; closes the figure."""
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1], dpi=DPI)
    plt.close(fig)
    return paths


def _device(model: nn.Module) -> torch.device:
    t = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return torch.device("cpu") if t is None else t.device


def _dtype(model: nn.Module) -> torch.dtype:
    t = next((p for p in model.parameters() if p.is_floating_point()), None)
    return torch.float32 if t is None else t.dtype


def _to(model: nn.Module, x: Tensor | None) -> Tensor | None:
    return None if x is None else x.to(_device(model), _dtype(model))


def draw_samples(
    model: nn.Module, n: int, context: Tensor | None = None, temperature: float = 1.0
) -> Tensor:
    """``n`` samples of any run's model (flows, VAE, GAN, RBM, NADE), as float CPU tensors."""
    with torch.no_grad():
        x = model.sample(n, _to(model, context), temperature)  # type: ignore[operator]
    return x.detach().float().cpu()


def box_of(x: Tensor, margin: float = 0.1) -> tuple[float, float, float, float]:
    """The box holding the 0.1 % to 99.9 % quantiles of 2-D points, padded by ``margin``."""
    x = x.float()
    lo, hi = x.quantile(0.001, dim=0), x.quantile(0.999, dim=0)
    pad = (hi - lo).clamp_min(1e-3) * margin
    return (
        float(lo[0] - pad[0]),
        float(hi[0] + pad[0]),
        float(lo[1] - pad[1]),
        float(hi[1] + pad[1]),
    )


def _label_2d(ax: plt.Axes, first: str = "$x_1$", second: str = "$x_2$") -> None:
    ax.set_xlabel(first)
    ax.set_ylabel(second)


def density_grid(
    log_prob: Callable[[Tensor], Tensor],
    box: tuple[float, float, float, float],
    n: int = GRID,
) -> np.ndarray:
    """``exp(log_prob)`` on an ``n x n`` grid over ``box`` (rows: the second coordinate)."""
    x0, x1, y0, y1 = box
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, n), torch.linspace(y0, y1, n), indexing="xy")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    with torch.no_grad():
        dens = torch.cat([log_prob(p).float().cpu() for p in pts.split(4096)]).exp()
    dens = torch.nan_to_num(dens, nan=0.0, posinf=0.0)
    return dens.reshape(n, n).numpy()


def _imshow_density(
    fig: plt.Figure, ax: plt.Axes, dens: np.ndarray, box: tuple, label: str = "density p(x)"
) -> None:
    im = ax.imshow(dens, origin="lower", extent=box, aspect="auto", cmap="viridis")
    im.set_rasterized(True)
    fig.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.04)


def _context_label(c: Tensor) -> str:
    values = ", ".join(f"{float(v):.2f}" for v in c.flatten()[:4])
    more = ", ..." if c.numel() > 4 else ""
    if c.numel() > 1 and bool(((c == 0) | (c == 1)).all()) and float(c.sum()) == 1:
        return f"context: class {int(c.argmax())}"
    return f"context = [{values}{more}]"


def pick_contexts(context: Tensor, k: int = 4) -> Tensor:
    """Up to ``k`` representative contexts of a split: its distinct rows when there are at
    most ``k`` (class labels), else the rows at evenly spaced quantiles of the first feature."""
    distinct = torch.unique(context, dim=0)
    if len(distinct) <= k:
        return distinct
    order = context[:, 0].argsort()
    idx = order[torch.linspace(0, len(order) - 1, k).round().long()]
    return context[idx]


def flow_layers(flow: Flow) -> list[Transform]:
    """The flow's transform as a flat list of layers (nested compositions opened)."""

    def flat(t: Transform) -> list[Transform]:
        if isinstance(t, Compose):
            return [u for s in t.transforms for u in flat(s)]  # type: ignore[arg-type]
        return [t]

    return flat(flow.transform)


def _grid_lines(box: tuple[float, float, float, float], lines: int = 13, points: int = 80) -> list:
    x0, x1, y0, y1 = box
    xs, ys = torch.linspace(x0, x1, lines), torch.linspace(y0, y1, lines)
    tx, ty = torch.linspace(x0, x1, points), torch.linspace(y0, y1, points)
    vertical = [torch.stack([torch.full_like(ty, float(x)), ty], 1) for x in xs]
    horizontal = [torch.stack([tx, torch.full_like(tx, float(y))], 1) for y in ys]
    return vertical + horizontal


def layer_stages(
    flow: Flow, x: Tensor, context: Tensor | None = None, max_stages: int = 6
) -> list[tuple[str, Tensor]]:
    """``x`` (``(n, 2)``) after 0, some, ..., all layers of the flow's transform (data to
    latent): at most ``max_stages`` stages, the first the data and the last the latent."""
    layers = flow_layers(flow)
    keep = set(np.linspace(0, len(layers), min(max_stages, len(layers) + 1)).round().astype(int))
    stages = [("data space", x.cpu())]
    h = _to(flow, x)
    c = None if context is None else _to(flow, context.reshape(1, -1).expand(len(x), -1))
    with torch.no_grad():
        for i, layer in enumerate(layers, start=1):
            h = layer(h, c)[0]
            if i in keep:
                name = "latent space" if i == len(layers) else f"after layer {i}"
                stages.append((f"{name}\n({type(layer).__name__})", h.float().cpu()))
    return stages


def plot_flow_2d(
    flow: Flow,
    data: Tensor,
    out: Path,
    context: Tensor | None = None,
) -> list[Path]:
    """The figures of a 2-D flow trained on ``data`` (test points; ``context`` their contexts
    for a conditional flow): ``data``, ``density``, ``samples``, ``latent``, ``layers``."""
    out = Path(out)
    flow.eval()
    data = data[:SCATTER].float()
    context = None if context is None else context[:SCATTER].float()
    box = box_of(data)
    files: list[Path] = []

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    h = ax.hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=80, range=[box[:2], box[2:]])
    h[3].set_rasterized(True)
    fig.colorbar(h[3], ax=ax, label="test points per bin")
    ax.set_title(f"data (test split, {len(data)} points)")
    _label_2d(ax)
    files += save_figure(fig, out, "data")

    contexts = [None] if context is None else list(pick_contexts(context))
    fig, axes = plt.subplots(1, len(contexts), figsize=(5.2 * len(contexts), 4.4), squeeze=False)
    for ax, c in zip(axes[0], contexts, strict=True):
        cc = None if c is None else _to(flow, c.reshape(1, -1))

        def log_prob(p: Tensor, cc: Tensor | None = cc) -> Tensor:
            ctx = None if cc is None else cc.expand(len(p), -1)
            return flow.log_prob(_to(flow, p), ctx)

        _imshow_density(fig, ax, density_grid(log_prob, box), box, "learned density p(x)")
        ax.set_title("learned density" if c is None else f"learned density, {_context_label(c)}")
        _label_2d(ax)
    files += save_figure(fig, out, "density")

    xs = draw_samples(flow, len(data), context)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharex=True, sharey=True)
    for ax, pts, name in ((axes[0], data, "data (test)"), (axes[1], xs, "samples of the flow")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, rasterized=True)
        ax.set_title(name + ("" if context is None else ", at the test points' contexts"))
        _label_2d(ax)
    axes[0].set_xlim(*box[:2])
    axes[0].set_ylim(*box[2:])
    files += save_figure(fig, out, "samples")

    with torch.no_grad():
        zs = flow.transform_to_latent(_to(flow, data), _to(flow, context)).float().cpu()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    sc = ax.scatter(zs[:, 0], zs[:, 1], s=2, c=data[:, 0].numpy(), cmap="coolwarm", rasterized=True)
    fig.colorbar(sc, ax=ax, label="$x_1$ of the data point")
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2, 3):
        ax.plot(r * np.cos(t), r * np.sin(t), "k--", lw=0.6)
    ax.set_title("test data in latent space (circles: 1, 2, 3 sd)")
    _label_2d(ax, "$z_1$", "$z_2$")
    ax.set_aspect("equal")
    files += save_figure(fig, out, "latent")

    files += plot_layers(flow, data, out, None if context is None else context[0])
    return files


def plot_layers(flow: Flow, data: Tensor, out: Path, context: Tensor | None = None) -> list[Path]:
    """``layers``: a grid over the data's box and the data, pushed layer by layer from data
    space (left) to latent space (right)."""
    box = box_of(data)
    lines = _grid_lines(box)
    pts = data[:800]
    everything = torch.cat([pts, *lines])
    stages = layer_stages(flow, everything, context)
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.4), squeeze=False)
    sizes = [len(pts)] + [len(line) for line in lines]
    for ax, (name, h) in zip(axes[0], stages, strict=True):
        parts = h.split(sizes)
        for line in parts[1:]:
            ax.plot(line[:, 0], line[:, 1], color="0.55", lw=0.5)
        ax.scatter(parts[0][:, 0], parts[0][:, 1], s=1, c="C1", alpha=0.6, rasterized=True)
        fin = h[torch.isfinite(h).all(1)]
        if len(fin):
            b = box_of(fin, 0.05)
            ax.set_xlim(*b[:2])
            ax.set_ylim(*b[2:])
        ax.set_title(name, fontsize=9)
        first = name.startswith("data")
        _label_2d(ax, "$x_1$" if first else "$h_1$", "$x_2$" if first else "$h_2$")
    axes[0, -1].set_xlabel("$z_1$")
    axes[0, -1].set_ylabel("$z_2$")
    suffix = "" if context is None else f" ({_context_label(context)})"
    fig.suptitle(f"grid and test points pushed from data space to latent space{suffix}")
    return save_figure(fig, out, "layers")


def plot_samples_2d(model: nn.Module, data: Tensor, out: Path, what: str) -> list[Path]:
    """``samples``: samples of any 2-D model beside the test data (``what``: the model)."""
    data = data[:SCATTER].float()
    xs = draw_samples(model, len(data))
    box = box_of(data)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharex=True, sharey=True)
    for ax, pts, name in ((axes[0], data, "data (test)"), (axes[1], xs, f"samples of the {what}")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, rasterized=True)
        ax.set_title(name)
        _label_2d(ax)
    axes[0].set_xlim(*box[:2])
    axes[0].set_ylim(*box[2:])
    return save_figure(fig, out, "samples")


def choose_dimensions(x: Tensor, k: int = 4) -> list[int]:
    """The ``k`` dimensions of largest variance, in index order."""
    var = x.reshape(len(x), -1).float().var(0)
    return sorted(var.argsort(descending=True)[:k].tolist())


def plot_vectors(
    samples: Tensor | None,
    data: Tensor | None,
    out: Path,
    what: str = "model",
    data_name: str = "data (test)",
) -> list[Path]:
    """``pairs`` (a pair plot of data vs samples on up to 4 dimensions of largest variance)
    and ``marginals`` (histograms of up to 16 dimensions) for vectors of any dimension."""
    sets = [
        (n, x.reshape(len(x), -1).float()[:SCATTER])
        for n, x in ((data_name, data), (f"samples of the {what}", samples))
        if x is not None
    ]
    ref = sets[0][1]
    d = ref.shape[1]
    files: list[Path] = []
    dims = choose_dimensions(ref, 4)
    if len(dims) >= 2:
        k = len(dims)
        fig, axes = plt.subplots(k, k, figsize=(2.4 * k, 2.4 * k), squeeze=False)
        for i, a in enumerate(dims):
            lo, hi = ref[:, a].quantile(0.005), ref[:, a].quantile(0.995)
            for j, b in enumerate(dims):
                ax = axes[i, j]
                if j > i:
                    ax.axis("off")
                    continue
                for n, (name, x) in enumerate(sets):
                    if i == j:
                        ax.hist(
                            x[:, a].clamp(lo, hi),
                            bins=40,
                            density=True,
                            histtype="step",
                            color=f"C{n}",
                            label=name,
                        )
                    else:
                        ax.scatter(x[:, b], x[:, a], s=1, alpha=0.3, color=f"C{n}", rasterized=True)
                if i == k - 1:
                    ax.set_xlabel(f"$x_{{{b}}}$")
                if j == 0:
                    ax.set_ylabel(f"$x_{{{a}}}$" if i else "density")
        axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
        fig.suptitle(f"pair plot on the {k} dimensions of largest variance (of {d})")
        files += save_figure(fig, out, "pairs")
    shown = list(range(min(d, 16)))
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for a, ax in zip(shown, axes.flat, strict=False):
        lo, hi = ref[:, a].quantile(0.005), ref[:, a].quantile(0.995)
        for n, (name, x) in enumerate(sets):
            ax.hist(
                x[:, a].clamp(lo, hi),
                bins=40,
                density=True,
                histtype="step",
                color=f"C{n}",
                label=name,
            )
        ax.set_xlabel(f"$x_{{{a}}}$")
        ax.set_ylabel("density")
    axes.flat[0].legend(fontsize=7)
    more = f" (first 16 of {d})" if d > 16 else ""
    fig.suptitle(f"marginal of each dimension{more}")
    files += save_figure(fig, out, "marginals")
    return files


def _tile(images: Tensor, nrow: int) -> np.ndarray:
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1) * float(images.max())
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = 1 + r * (h + 1), 1 + col * (w + 1)
        grid[:, top : top + h, left : left + w] = images[i]
    g = grid.permute(1, 2, 0).numpy()
    return g[:, :, 0] if c == 1 else g


def plot_images(
    model: nn.Module,
    data: Tensor,
    out: Path,
    temperatures: Sequence[float] = (0.5, 0.7, 0.85, 1.0),
    context: Tensor | None = None,
    n: int = 36,
) -> list[Path]:
    """``samples``: the test images beside grids of ``n`` samples at each temperature (at the
    first test images' contexts for a conditional model)."""
    data = data[:n].float()
    c = None if context is None else context[:n]
    vmax = max(1.0, float(data.max()))
    panels = [("data (test)", data)]
    for t in temperatures:
        try:
            x = draw_samples(model, len(data), c, t)
        except TypeError:  # a model without a temperature
            x = draw_samples(model, len(data), c)
        if vmax > 1:  # flows on raw pixel values: round to the pixel levels
            x = torch.floor(x + 0.5)
        panels.append((f"samples, T = {t:g}", x))
    nrow = int(np.ceil(np.sqrt(len(data))))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.1), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels, strict=True):
        img = _tile(x.clamp(0, vmax), nrow)
        ax.imshow(
            img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=vmax, interpolation="nearest"
        )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    note = "" if context is None else " (at the contexts of the first test images)"
    fig.suptitle(f"images; T scales the base noise{note}", fontsize=9)
    return save_figure(fig, out, "samples")


def plot_target_fit(
    log_p: Callable[[Tensor], Tensor],
    model: nn.Module,
    out: Path,
    bounds: Sequence[float] | None,
    name: str = "target",
) -> list[Path]:
    """``fit``: a 2-D target's (unnormalised) density beside the fitted ``q``'s density and a
    histogram of its samples."""
    xs = draw_samples(model, 20000)
    if bounds is not None:
        box = (-bounds[0], bounds[0], -bounds[1], bounds[1])
    else:
        box = box_of(xs)
    target = density_grid(lambda p: log_p(p.double()), box)
    target = (
        target
        / max(float(target.sum()), 1e-300)
        * (GRID**2)
        / ((box[1] - box[0]) * (box[3] - box[2]))
    )
    q = density_grid(lambda p: model.log_prob(_to(model, p)), box)  # type: ignore[operator]
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.4))
    _imshow_density(fig, axes[0], target, box, "density p(z) (normalised on the grid)")
    axes[0].set_title(f"target: {name}")
    _imshow_density(fig, axes[1], q, box, "density q(z)")
    axes[1].set_title("fitted q: density")
    h = axes[2].hist2d(
        xs[:, 0].numpy(), xs[:, 1].numpy(), bins=100, range=[box[:2], box[2:]], cmap="viridis"
    )
    h[3].set_rasterized(True)
    fig.colorbar(h[3], ax=axes[2], label=f"samples per bin (of {len(xs)})")
    axes[2].set_title("fitted q: samples")
    for ax in axes:
        _label_2d(ax, "$z_1$", "$z_2$")
    return save_figure(fig, out, "fit")


def plot_training_curves(
    records: list[dict[str, Any]],
    out: Path,
    metric: str,
    train_key: str | None = None,
    entropy: float | None = None,
    unit: str | None = None,
) -> list[Path]:
    """``curves``: the training loss (``train_key``) and the validation metric
    (``val_<metric>``, marked at each evaluation, with its standard error) against the step,
    and the true entropy as a dashed line when known. A run with one evaluation shows its
    point, never an empty plot."""
    records = [r for r in records if "event" not in r and "step" in r]
    val_key = f"val_{metric}"
    unit = unit or METRIC_UNITS.get(metric, "")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    val = [r for r in records if val_key in r]
    if train_key:
        tr = [r for r in records if train_key in r]
        if tr:
            ax.plot(
                [r["step"] for r in tr],
                [r[train_key] for r in tr],
                "-",
                color="C0",
                marker="." if len(tr) < 30 else None,
                label=f"training ({train_key.removeprefix('train_')}, mean since last point)",
            )
    if val:
        steps = [r["step"] for r in val]
        ys = [r[val_key] for r in val]
        err = [r.get("val_stderr", 0.0) or 0.0 for r in val]
        ax.errorbar(
            steps,
            ys,
            yerr=err,
            fmt="o-",
            color="C1",
            ms=4,
            capsize=2,
            label=f"validation ({metric})",
        )
    if entropy is not None:
        ax.axhline(entropy, ls="--", color="k", lw=1, label=f"true entropy {entropy:.3f}")
    if not val and not records:
        ax.text(
            0.5, 0.5, "no evaluation recorded", ha="center", va="center", transform=ax.transAxes
        )
    if records:
        ax.set_xlim(0, max(r["step"] for r in records) * 1.05 + 1)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("training curves")
    return save_figure(fig, out, "curves")
