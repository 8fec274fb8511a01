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

What a scientist can trust in them:

- the test points shown are a seeded random subset of the test rows (:func:`shown_rows`), never
  the first rows in file order, so a file sorted by one column shows its whole range; the model
  is drawn with at least :data:`SAMPLES` samples whatever the test size (:func:`draw_at`), at the
  shown rows' contexts for a conditional model;
- histograms never clamp outliers into their edge bins: the plotted range is each set's 0.5 to
  99.5 percentile range, united and widened by 5 % (:func:`plot_range`), and a panel says how
  many points fall outside it;
- axes are named by the data's feature names (``Splits.info["features"]``) with few, compactly
  formatted ticks; a conditional run's points are coloured by their context (a categorical
  column's level by name, ``info["levels"]``, or a numeric context's value);
- the pair plot shows the dimensions most dependent on the others in standardised units
  (:func:`choose_dimensions`), not the ones of largest raw variance across mixed units.

Everything is drawn from a few thousand points so a run's figures take a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from flowforge.flows import Flow  # noqa: E402
from flowforge.transforms import Compose, Inverse, Transform  # noqa: E402

__all__ = [
    "DPI",
    "METRIC_UNITS",
    "SAMPLES",
    "SCATTER",
    "ContextColours",
    "choose_dimensions",
    "context_colours",
    "draw_at",
    "feature_names",
    "flow_layers",
    "plot_flow_2d",
    "plot_images",
    "plot_samples_2d",
    "plot_target_fit",
    "plot_training_curves",
    "plot_range",
    "plot_vectors",
    "save_figure",
    "shown_rows",
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
SCATTER = 2000  # test points shown: a seeded random subset of the test rows
SAMPLES = 2000  # model samples drawn for a figure, at least, whatever the test size
GRID = 120  # density evaluations per axis
DATA_COLOUR, SAMPLE_COLOUR = "C0", "C1"


def save_figure(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Writes ``out/NAME.png`` (:data:`DPI`) and ``out/NAME.svg``; closes the figure. A
    figure without a layout engine of its own is laid out tightly."""
    out.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
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
    model: nn.Module,
    n: int,
    context: Tensor | None = None,
    temperature: float = 1.0,
    seed: int | None = None,
) -> Tensor:
    """``n`` samples of any run's model (flows, VAE, GAN, RBM, NADE), as float CPU tensors;
    with a ``seed``, the same samples every time (the global random state is left as it was)."""
    device = _device(model)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        x = model.sample(n, _to(model, context), temperature)  # type: ignore[operator]
    return x.detach().float().cpu()


def shown_rows(
    data: Tensor, context: Tensor | None = None, seed: int = 0, k: int = SCATTER
) -> tuple[Tensor, Tensor | None]:
    """The test points a figure shows, with their contexts: all of them when there are at most
    ``k``, else a random subset of ``k`` drawn with ``seed`` (in the rows' order). A file
    sorted by one column keeps its whole range; its first ``k`` rows would not."""
    if len(data) > k:
        rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:k]
        rows = rows.sort().values
        data = data[rows]
        context = None if context is None else context[rows]
    return data.float(), None if context is None else context.float()


def draw_at(
    model: nn.Module, context: Tensor | None = None, seed: int = 0, n: int = SAMPLES
) -> tuple[Tensor, Tensor | None]:
    """At least ``n`` samples of ``model`` with the contexts they were drawn at: for a
    conditional model, ``context``'s rows in turn (each shown row's context about equally
    often), so the samples follow the test rows' mix of contexts."""
    if context is None:
        return draw_samples(model, n, seed=seed), None
    n = max(n, len(context))
    at = context[torch.arange(n) % len(context)]
    return draw_samples(model, n, at, seed=seed), at


def plot_range(
    *sets: Tensor | np.ndarray | None,
    lower: float = 0.5,
    upper: float = 99.5,
    widen: float = 0.05,
) -> tuple[float, float]:
    """The range an axis shows for 1-D point sets (data, samples): the union of each set's
    ``lower`` to ``upper`` percentile range (finite values), widened by ``widen`` of its width
    on each side. Points beyond it are left out and counted (:func:`outside`), never clamped
    into the edge bins of a histogram."""
    los, his = [], []
    for x in sets:
        if x is None:
            continue
        v = np.asarray(x, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if len(v):
            lo, hi = np.percentile(v, [lower, upper])
            los.append(lo)
            his.append(hi)
    if not los:
        return -1.0, 1.0
    lo, hi = float(min(los)), float(max(his))
    pad = (hi - lo) * widen if hi > lo else max(abs(lo), 1.0) * 0.5
    return lo - pad, hi + pad


def outside(x: Tensor | np.ndarray, lo: float, hi: float) -> int:
    """How many of ``x`` lie outside ``[lo, hi]`` (non-finite values included)."""
    v = np.asarray(x, dtype=np.float64).ravel()
    return int(len(v) - np.count_nonzero((v >= lo) & (v <= hi)))


def feature_names(info: dict | None, d: int, start: int = 0) -> list[str]:
    """The axis label of each of ``d`` dimensions: the data's feature names
    (``info["features"]``, file data) when it has ``d`` of them, else ``x_0 ... x_{d-1}``
    (numbered from ``start``)."""
    names = (info or {}).get("features")
    if isinstance(names, list) and len(names) == d:
        return [_plain(str(n)) for n in names]
    return [f"$x_{{{i + start}}}$" for i in range(d)]


def _plain(text: str) -> str:
    """``text`` as matplotlib shows it literally (a ``$`` starts no mathtext)."""
    return text.replace("$", r"\$")


def tick_label(value: float, _pos: object = None) -> str:
    """A tick label: plain digits from 1e-4 to 1e6 (``0.0125``, ``5000``), else short
    scientific notation (``1.5e-5``)."""
    if value == 0:
        return "0"
    if 1e-4 <= abs(value) < 1e6:
        return f"{value:.6g}"
    mantissa, exponent = f"{value:.2g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _ticks(ax: plt.Axes, bins: int = 4, size: float = 7) -> None:
    """Few ticks with compact labels, so small panels of small-valued data stay legible."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=bins, min_n_ticks=2))
        axis.set_major_formatter(FuncFormatter(tick_label))
    ax.tick_params(labelsize=size)


@dataclass(frozen=True)
class ContextColours:
    """How a conditional run's points are coloured: by a categorical context column's level
    (``levels`` its names; the column's one-hot block is ``columns``) or by a numeric context
    column's value (``levels`` is ``None``)."""

    label: str
    columns: slice
    levels: tuple[str, ...] | None = None

    def values(self, context: Tensor) -> np.ndarray:
        """Each row's colour value: its level's index, or its numeric context value."""
        block = context[:, self.columns].float()
        if self.levels is not None:
            return block.argmax(1).numpy()
        return block[:, 0].numpy()


def context_colours(context: Tensor | None, info: dict | None = None) -> ContextColours | None:
    """How to colour points by their ``context`` (``(n, c)``): by the first categorical
    column named in ``info["levels"]`` (its one-hot block found by the names
    ``COLUMN=LEVEL`` in ``info["context"]``), else by class when the whole context is one-hot
    (``class 0``, ``class 1``, ...), else by the first context column's value."""
    if context is None or context.dim() != 2 or context.shape[1] == 0:
        return None
    info = info or {}
    width = context.shape[1]
    names = info.get("context")
    names = [str(n) for n in names] if isinstance(names, list) and len(names) == width else None
    levels = info.get("levels")
    if names and isinstance(levels, dict):
        for column, values in levels.items():
            block = [f"{column}={v}" for v in values]
            for start in range(width - len(block) + 1):
                if names[start : start + len(block)] == block:
                    span = slice(start, start + len(block))
                    return ContextColours(str(column), span, tuple(str(v) for v in values))
    one_hot = bool(((context == 0) | (context == 1)).all()) and bool((context.sum(1) == 1).all())
    if width > 1 and one_hot:
        return ContextColours("class", slice(0, width), tuple(f"class {i}" for i in range(width)))
    label = names[0] if names else "context $c_0$"
    if width > 1:
        label += f" (first of {width} context columns)"
    return ContextColours(_plain(label) if names else label, slice(0, 1))


def box_of(x: Tensor, margin: float = 0.1) -> tuple[float, float, float, float]:
    """The box holding the 0.1 % to 99.9 % quantiles of 2-D points, padded by ``margin`` of
    its width (of the values' size when the width is nil: data in millionths stays in view)."""
    x = x.double()
    lo, hi = x.quantile(0.001, dim=0), x.quantile(0.999, dim=0)
    floor = torch.maximum(lo.abs(), hi.abs()).clamp_min(1e-30) * 1e-3
    pad = torch.maximum(hi - lo, floor) * margin
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


def _context_label(c: Tensor, info: dict | None = None) -> str:
    """One context row in words: its level (``species = Adelie``, ``context: class 1``), its
    value (``year = 2008``) or its first values."""
    by = context_colours(c.reshape(1, -1), info)
    if by is not None and by.levels is not None:
        level = by.levels[int(by.values(c.reshape(1, -1))[0])]
        return f"context: {level}" if by.label == "class" else f"{by.label} = {level}"
    if by is not None and c.numel() == 1 and not by.label.startswith("context"):
        return f"{by.label} = {tick_label(float(c))}"
    values = ", ".join(f"{float(v):.2f}" for v in c.flatten()[:4])
    more = ", ..." if c.numel() > 4 else ""
    return f"context = [{values}{more}]"


def _colour_kwargs(
    by: ContextColours | None, context: Tensor | None, colour: str, norm: Any
) -> dict[str, Any]:
    """``scatter`` keywords: one ``colour``, or each point's by its context (``by``)."""
    if by is None or context is None:
        return {"color": colour}
    v = by.values(context)
    if by.levels is not None:
        return {"c": [f"C{int(i) % 10}" for i in v]}
    return {"c": v, "cmap": "viridis", "norm": norm}


def _context_norm(by: ContextColours | None, *contexts: Tensor | None) -> Any:
    """The colour scale of a numeric context, shared by every panel (``None`` otherwise)."""
    if by is None or by.levels is not None:
        return None
    v = np.concatenate([by.values(c) for c in contexts if c is not None])
    lo, hi = plot_range(v, lower=0, upper=100, widen=0)
    return Normalize(lo, hi)


def _context_key(fig: plt.Figure, axes: Any, by: ContextColours, norm: Any) -> None:
    """The key to the colours: a legend of the levels, or a colour bar of the values."""
    if by.levels is None:
        mappable = ScalarMappable(norm=norm, cmap="viridis")
        fig.colorbar(mappable, ax=axes, label=f"colour: {by.label}", shrink=0.6)
        return
    handles = [
        Line2D([], [], ls="", marker="o", color=f"C{i % 10}", label=level)
        for i, level in enumerate(by.levels)
    ]
    title = "colour: class" if by.label == "class" else f"colour: {by.label}"
    fig.legend(
        handles=handles, title=title, loc="outside right upper", fontsize=8, title_fontsize=8
    )


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


def layer_name(layer: Transform) -> str:
    """A layer's type, with the layer an :class:`Inverse` wraps (``Inverse(Planar)``)."""
    if type(layer) is Inverse:
        return f"Inverse({layer_name(layer.transform)})"  # type: ignore[arg-type]
    return type(layer).__name__


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
    latent): at most ``max_stages`` stages, the first the data and the last the latent. Each
    stage is named by the last layer applied, its index and type (``after 3:
    MaskedAutoregressive``)."""
    layers = flow_layers(flow)
    keep = set(np.linspace(0, len(layers), min(max_stages, len(layers) + 1)).round().astype(int))
    stages = [("data space", x.cpu())]
    h = _to(flow, x)
    c = None if context is None else _to(flow, context.reshape(1, -1).expand(len(x), -1))
    with torch.no_grad():
        for i, layer in enumerate(layers, start=1):
            h = layer(h, c)[0]
            if i in keep:
                name = f"after {i}: {layer_name(layer)}"
                name = f"latent space\n({name})" if i == len(layers) else name
                stages.append((name, h.float().cpu()))
    return stages


def _scatter_pair(
    axes: Sequence[plt.Axes],
    panels: Sequence[tuple[str, Tensor, Tensor | None]],
    names: Sequence[str],
    by: ContextColours | None,
) -> None:
    """Test data beside samples (``panels``: title, points, their contexts) on one box that
    holds both (:func:`plot_range` per axis), each panel saying how many of its points fall
    outside; coloured by context when ``by`` says how."""
    x0, x1 = plot_range(*(pts[:, 0] for _, pts, _ in panels))
    y0, y1 = plot_range(*(pts[:, 1] for _, pts, _ in panels))
    norm = _context_norm(by, *(c for _, _, c in panels))
    for n, (ax, (title, pts, c)) in enumerate(zip(axes, panels, strict=True)):
        kw = _colour_kwargs(by, c, (DATA_COLOUR, SAMPLE_COLOUR)[n], norm)
        ax.scatter(pts[:, 0], pts[:, 1], s=_dot(len(pts)), alpha=0.5, rasterized=True, **kw)
        beyond = len(pts) - int(
            ((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)).sum()
        )
        ax.set_title(title + (f"\n{beyond:,} outside the axes" if beyond else ""))
        _label_2d(ax, *names)
        _ticks(ax, bins=6, size=9)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    if by is not None:
        _context_key(axes[0].figure, list(axes), by, norm)


def _dot(n: int) -> float:
    """A scatter marker's size for ``n`` points: bigger for few points."""
    return 10.0 if n < 300 else 4.0 if n < 1000 else 2.0


def plot_flow_2d(
    flow: Flow,
    data: Tensor,
    out: Path,
    context: Tensor | None = None,
    info: dict | None = None,
    seed: int = 0,
) -> list[Path]:
    """The figures of a 2-D flow trained on ``data`` (test points; ``context`` their contexts
    for a conditional flow; ``info`` the data's names): ``data``, ``density``, ``samples``,
    ``latent``, ``layers``."""
    out = Path(out)
    flow.eval()
    total = len(data)
    data, context = shown_rows(data, context, seed)
    names = feature_names(info, 2, start=1)
    by = context_colours(context, info)
    box = box_of(data)
    files: list[Path] = []
    subset = "" if total == len(data) else f", a random {len(data):,} of {total:,}"

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    h = ax.hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=80, range=[box[:2], box[2:]])
    h[3].set_rasterized(True)
    fig.colorbar(h[3], ax=ax, label="test points per bin")
    ax.set_title(f"data (test split, {total:,} points)")
    _label_2d(ax, *names)
    _ticks(ax, bins=6, size=9)
    files += save_figure(fig, out, "data")

    contexts = [None] if context is None else list(pick_contexts(context))
    fig, axes = plt.subplots(1, len(contexts), figsize=(5.2 * len(contexts), 4.4), squeeze=False)
    for ax, c in zip(axes[0], contexts, strict=True):
        cc = None if c is None else _to(flow, c.reshape(1, -1))

        def log_prob(p: Tensor, cc: Tensor | None = cc) -> Tensor:
            ctx = None if cc is None else cc.expand(len(p), -1)
            return flow.log_prob(_to(flow, p), ctx)

        _imshow_density(fig, ax, density_grid(log_prob, box), box, "learned density p(x)")
        title = "learned density" if c is None else f"learned density, {_context_label(c, info)}"
        ax.set_title(title)
        _label_2d(ax, *names)
        _ticks(ax, bins=6, size=9)
    files += save_figure(fig, out, "density")

    xs, at = draw_at(flow, context, seed)
    fig, axes = plt.subplots(1, 2, figsize=(10.2 if by else 9, 4.4), layout="constrained")
    where = "" if context is None else " at the test contexts"
    panels = [
        (f"test data ({len(data):,} points{subset})", data, context),
        (f"{len(xs):,} samples of the flow{where}", xs, at),
    ]
    _scatter_pair(axes, panels, names, by)
    files += save_figure(fig, out, "samples")

    with torch.no_grad():
        zs = flow.transform_to_latent(_to(flow, data), _to(flow, context)).float().cpu()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    sc = ax.scatter(
        zs[:, 0], zs[:, 1], s=_dot(len(zs)), c=data[:, 0].numpy(), cmap="coolwarm", rasterized=True
    )
    fig.colorbar(sc, ax=ax, label=f"{names[0]} of the data point")
    t = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2, 3):
        ax.plot(r * np.cos(t), r * np.sin(t), "k--", lw=0.6)
    ax.set_title("test data in latent space (circles: 1, 2, 3 sd)")
    _label_2d(ax, "$z_1$", "$z_2$")
    _ticks(ax, bins=6, size=9)
    ax.set_aspect("equal")
    files += save_figure(fig, out, "latent")

    files += plot_layers(flow, data, out, None if context is None else context[0], info)
    return files


def plot_layers(
    flow: Flow,
    data: Tensor,
    out: Path,
    context: Tensor | None = None,
    info: dict | None = None,
) -> list[Path]:
    """``layers``: a grid over the data's box and the data, pushed layer by layer from data
    space (left) to latent space (right); each panel named by the layer's index and type."""
    box = box_of(data)
    lines = _grid_lines(box)
    pts = data[:800]
    everything = torch.cat([pts, *lines])
    stages = layer_stages(flow, everything, context)
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.5), squeeze=False)
    sizes = [len(pts)] + [len(line) for line in lines]
    names = feature_names(info, 2, start=1)
    for ax, (name, h) in zip(axes[0], stages, strict=True):
        parts = h.split(sizes)
        for line in parts[1:]:
            ax.plot(line[:, 0], line[:, 1], color="0.55", lw=0.5)
        dots = max(1.0, _dot(len(pts)) / 2)
        ax.scatter(parts[0][:, 0], parts[0][:, 1], s=dots, c="C1", alpha=0.6, rasterized=True)
        fin = h[torch.isfinite(h).all(1)]
        if len(fin):
            b = box_of(fin, 0.05)
            ax.set_xlim(*b[:2])
            ax.set_ylim(*b[2:])
        ax.set_title(name, fontsize=9)
        _ticks(ax)
        first = name.startswith("data")
        _label_2d(ax, *(names if first else ("$h_1$", "$h_2$")))
    axes[0, -1].set_xlabel("$z_1$")
    axes[0, -1].set_ylabel("$z_2$")
    suffix = "" if context is None else f" ({_context_label(context, info)})"
    fig.suptitle(f"grid and test points pushed from data space to latent space{suffix}")
    return save_figure(fig, out, "layers")


def plot_samples_2d(
    model: nn.Module,
    data: Tensor,
    out: Path,
    what: str,
    info: dict | None = None,
    seed: int = 0,
) -> list[Path]:
    """``samples``: samples of any 2-D model beside the test data (``what``: the model)."""
    total = len(data)
    data, _ = shown_rows(data, None, seed)
    xs, _ = draw_at(model, None, seed)
    subset = "" if total == len(data) else f", a random {len(data):,} of {total:,}"
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    panels = [
        (f"test data ({len(data):,} points{subset})", data, None),
        (f"{len(xs):,} samples of the {what}", xs, None),
    ]
    _scatter_pair(axes, panels, feature_names(info, 2, start=1), None)
    return save_figure(fig, out, "samples")


def choose_dimensions(x: Tensor, k: int = 4) -> list[int]:
    """Up to ``k`` dimensions for a pair plot, in index order: all when there are at most
    ``k``, else the ``k`` most dependent on the others in standardised units (the largest sums
    of absolute correlations with the other dimensions). Units never decide: a column in grams
    is not chosen over one in millimetres for its larger numbers."""
    x = x.reshape(len(x), -1).double()
    d = x.shape[1]
    if d <= k:
        return list(range(d))
    z = (x - x.mean(0)) / x.std(0).clamp_min(1e-300)
    corr = torch.nan_to_num((z.T @ z) / max(len(z) - 1, 1)).abs()
    corr.fill_diagonal_(0)
    return sorted(corr.sum(1).argsort(descending=True, stable=True)[:k].tolist())


def _bins(n: int) -> int:
    """Histogram bins for ``n`` points: about 2 sqrt(n), between 10 and 40."""
    return int(np.clip(round(2 * np.sqrt(max(n, 1))), 10, 40))


def _histograms(
    ax: plt.Axes,
    sets: Sequence[tuple[str, Tensor, str, str]],
    lo: float,
    hi: float,
    bins: int,
) -> str:
    """Each set's histogram (label, values, colour, short name) on ``[lo, hi]`` as a density
    of all its points, so points beyond the range lower the bars instead of piling into the
    edge bins; the first set filled, the others as lines. Returns the note of how many points
    fall outside (empty when none)."""
    edges = np.linspace(lo, hi, bins + 1)
    notes = []
    for n, (label, x, colour, short) in enumerate(sets):
        v = np.asarray(x, dtype=np.float64).ravel()
        counts, _ = np.histogram(v[np.isfinite(v)], bins=edges)
        heights = counts / (max(len(v), 1) * (edges[1] - edges[0]))
        if n == 0:
            ax.stairs(heights, edges, fill=True, alpha=0.35, color=colour, label=label)
        else:
            ax.stairs(heights, edges, linewidth=1.4, color=colour, label=label)
        if len(v) > counts.sum():
            notes.append(f"{len(v) - counts.sum():,}/{len(v):,} {short}")
    return "outside the axis: " + ", ".join(notes) if notes else ""


def plot_vectors(
    samples: Tensor | None,
    data: Tensor | None,
    out: Path,
    what: str = "model",
    data_name: str = "test data",
    info: dict | None = None,
    data_context: Tensor | None = None,
    sample_context: Tensor | None = None,
) -> list[Path]:
    """``pairs`` and ``marginals`` for vectors of any dimension, the points as given (pick
    them with :func:`shown_rows` and :func:`draw_at`).

    ``pairs``: a corner plot on up to 4 dimensions (:func:`choose_dimensions`), the data
    below the diagonal, the samples above it (each cell's x axis its column's dimension, y its
    row's), their histograms on the diagonal; a conditional run's points coloured by their
    contexts (``data_context``, ``sample_context``; :func:`context_colours`).
    ``marginals``: a histogram per dimension (up to 16), data filled, samples as a line.
    Every range comes from :func:`plot_range` and each panel says how many points fall
    outside it. Axes are named by ``info["features"]`` (:func:`feature_names`)."""
    given = (
        (data_name, data, data_context, DATA_COLOUR, data_name),
        (f"samples of the {what}", samples, sample_context, SAMPLE_COLOUR, "samples"),
    )
    sets = [
        (f"{label} ({len(x):,})", x.reshape(len(x), -1).float(), c, colour, short)
        for label, x, c, colour, short in given
        if x is not None
    ]
    ref = sets[0][1]
    d = ref.shape[1]
    names = feature_names(info, d)
    ranges = [plot_range(*(s[1][:, a] for s in sets)) for a in range(d)]
    bins = _bins(len(ref))
    by = context_colours(data_context if data_context is not None else sample_context, info)
    files: list[Path] = []
    dims = choose_dimensions(ref, 4)
    if len(dims) >= 2:
        files += _corner(sets, dims, names, ranges, bins, by, d, out)
    shown = list(range(min(d, 16)))
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.7 * cols, 2.3 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for a, ax in zip(shown, axes.flat, strict=False):
        note = _histograms(ax, [(s[0], s[1][:, a], s[3], s[4]) for s in sets], *ranges[a], bins)
        ax.set_xlim(*ranges[a])
        ax.set_title(note, fontsize=7)
        ax.set_xlabel(names[a])
        _ticks(ax, bins=4)
        ax.set_yticks([])
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", fontsize=8, ncols=len(handles))
    more = f", the first 16 of {d}" if d > 16 else ""
    fig.suptitle(f"marginal of each dimension{more}", x=0.02, ha="left", fontsize=10)
    files += save_figure(fig, out, "marginals")
    return files


def _corner(
    sets: Sequence[tuple[str, Tensor, Tensor | None, str, str]],
    dims: Sequence[int],
    names: Sequence[str],
    ranges: Sequence[tuple[float, float]],
    bins: int,
    by: ContextColours | None,
    d: int,
    out: Path,
) -> list[Path]:
    """``pairs``: the first set below the diagonal, the second above it, both on the
    diagonal (see :func:`plot_vectors`)."""
    k = len(dims)
    fig, axes = plt.subplots(
        k, k, figsize=(2.3 * k + 1.2, 2.3 * k + 0.8), squeeze=False, layout="constrained"
    )
    norm = _context_norm(by, *(s[2] for s in sets))
    # coloured by context, the histograms are grey (data) and black (samples)
    neutral = ("0.5", "k") if by is not None else tuple(s[3] for s in sets)
    for i, a in enumerate(dims):
        for j, b in enumerate(dims):
            ax = axes[i, j]
            ax.set_xlim(*ranges[b])
            _ticks(ax, bins=3)
            if i == j:
                hist = ax.twinx()
                on_diagonal = [
                    (s[0], s[1][:, a], colour, s[4])
                    for s, colour in zip(sets, neutral, strict=False)
                ]
                note = _histograms(hist, on_diagonal, *ranges[a], bins)
                hist.set_yticks([])
                hist.set_title(note, fontsize=6)
                ax.set_ylim(*ranges[a])
            else:
                which = 0 if i > j else 1
                if which >= len(sets):
                    ax.axis("off")
                    continue
                _, x, c, colour, _ = sets[which]
                kw = _colour_kwargs(by, c, colour, norm)
                ax.scatter(x[:, b], x[:, a], s=_dot(len(x)) / 2, alpha=0.4, rasterized=True, **kw)
                ax.set_ylim(*ranges[a])
            ax.tick_params(labelbottom=i == k - 1, labelleft=j == 0)
            if i == k - 1:
                ax.set_xlabel(names[b])
            if j == 0:
                ax.set_ylabel(names[a])
    if by is not None:
        _context_key(fig, axes, by, norm)
    else:
        handles = [Line2D([], [], ls="", marker="o", color=s[3], label=s[0]) for s in sets]
        fig.legend(handles=handles, loc="outside upper right", fontsize=8)
    where = [f"below the diagonal: {sets[0][0]}"]
    if len(sets) > 1:
        where.append(f"above: {sets[1][0]}")
    if by is not None:
        where.append(
            "on the diagonal: data filled grey"
            + (", samples as a black line" if len(sets) > 1 else "")
        )
    chosen = (
        ""
        if d <= k
        else (f"\nthe {k} of {d} dimensions most correlated with the others (standardised units)")
    )
    fig.suptitle("\n".join(where) + chosen, fontsize=9, x=0.02, ha="left")
    return save_figure(fig, out, "pairs")


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
