"""The figures of a run on sequences of frames ``(n, T, C, H, W)`` (Moving MNIST, VideoFlow).

- :func:`plot_video_samples`: ``samples``, test sequences above sampled ones at a few
  temperatures, one sequence per row of frames (a sample strip);
- :func:`plot_video_prediction`: ``prediction``, for a few test sequences the true frames
  above continuations predicted from their first half (:meth:`~flowforge.models.videoflow.
  VideoFlow.predict`), the observed frames left of a red line;
- :func:`plot_frame_bits`: ``frame_bits``, bits per pixel of each frame position on the test
  sequences (:meth:`~flowforge.models.videoflow.VideoFlow.frame_log_probs`), with standard
  errors: the first frames, with no past, cost the most.

Samples and predictions are drawn with a fixed seed (the same figure every time), rounded to
the pixel levels and shown on the data's grey scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from flowforge.viz.run_figures import draw_samples, plt, save_figure

__all__ = ["plot_frame_bits", "plot_video_prediction", "plot_video_samples", "strip"]


def strip(sequences: Tensor, border: float, gap: int = 1) -> np.ndarray:
    """Sequences ``(n, T, 1, H, W)`` as one grey image, a row of ``T`` frames per sequence,
    frames ``gap`` pixels apart in lines of the value ``border``."""
    n, t, _, h, w = sequences.shape
    grid = np.full((n * (h + gap) + gap, t * (w + gap) + gap), border, np.float32)
    for i in range(n):
        for j in range(t):
            r, c = gap + i * (h + gap), gap + j * (w + gap)
            grid[r : r + h, c : c + w] = sequences[i, j, 0].numpy()
    return grid


def _show(ax: plt.Axes, image: np.ndarray, title: str, vmax: float) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xticks([])
    ax.set_yticks([])


def _like(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` on the model's device in its floating dtype."""
    p = next(model.parameters())
    return x.to(p.device, p.dtype)


def _pixels(x: Tensor, levels: int) -> Tensor:
    return torch.floor(x.float().cpu() + 0.5).clamp(0, levels - 1)


def plot_video_samples(
    model: nn.Module,
    data: Tensor,
    out: Path,
    levels: int = 256,
    temperatures: Sequence[float] = (0.7, 1.0),
    n: int = 4,
    seed: int = 0,
) -> list[Path]:
    """``samples``: ``n`` test sequences, then ``n`` samples at each temperature."""
    panels = [("test sequences", data[:n].float())]
    for t in temperatures:
        panels.append(
            (f"samples, T = {t:g}", _pixels(draw_samples(model, n, None, t, seed), levels))
        )
    frames = data.shape[1]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(0.8 * frames + 0.4, 0.85 * n * len(panels) + 0.3), squeeze=False
    )
    for ax, (title, x) in zip(axes[:, 0], panels, strict=True):
        _show(ax, strip(x, levels - 1), title, levels - 1)
    fig.suptitle(
        "sequences, one per row, time to the right; T scales the prior's noise", fontsize=9
    )
    return save_figure(fig, out, "samples")


def plot_video_prediction(
    model: nn.Module,
    data: Tensor,
    out: Path,
    levels: int = 256,
    temperature: float = 0.7,
    n: int = 3,
    draws: int = 2,
    seed: int = 0,
) -> list[Path]:
    """``prediction``: for ``n`` test sequences, the truth and ``draws`` continuations from the
    first half of its frames (at least one) at ``temperature``."""
    frames = data.shape[1]
    observed = max(1, frames // 2)
    x = _like(model, data[:n])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        predicted = [
            _pixels(model.predict(x[:, :observed], temperature=temperature), levels)  # type: ignore[operator]
            for _ in range(draws)
        ]
    rows = [data[:n].float()] + predicted  # (n, T, ...) each
    sequences = torch.stack(rows, 1).flatten(0, 1)  # truth, draws for each sequence in turn
    h, w = data.shape[-2:]
    fig, ax = plt.subplots(figsize=(0.8 * frames + 0.4, 0.8 * len(sequences) + 0.5))
    _show(
        ax,
        strip(sequences, levels - 1),
        f"each group: the truth, then {draws} predictions at T = {temperature:g} from the "
        f"{observed} frames left of the line",
        levels - 1,
    )
    ax.axvline(observed * (w + 1) + 0.5, color="red", linewidth=1.5)
    for i in range(1, n):  # a thicker gap between the groups
        ax.axhline(i * (1 + draws) * (h + 1) + 0.5, color="C0", linewidth=2)
    return save_figure(fig, out, "prediction")


def plot_frame_bits(
    model: nn.Module, data: Tensor, out: Path, batch_size: int = 256, seed: int = 0
) -> list[Path]:
    """``frame_bits``: the mean bits per pixel of each frame position on ``data``, with one
    standard error, beside their mean over the frames (the run's bits/dim)."""
    pixels = math.prod(data.shape[2:])
    terms = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)  # the dequantization noise
        for chunk in data.split(batch_size):
            terms.append(-model.frame_log_probs(_like(model, chunk)).double().cpu())  # type: ignore[operator]
    bits = torch.cat(terms) / (pixels * math.log(2))  # (n, T)
    mean = bits.mean(0).numpy()
    se = (bits.std(0) / math.sqrt(len(bits))).numpy() if len(bits) > 1 else np.zeros_like(mean)
    t = np.arange(1, len(mean) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.errorbar(t, mean, yerr=se, marker="o", capsize=3, label="frame t")
    ax.axhline(float(mean.mean()), color="C1", linestyle="--", label=f"mean {mean.mean():.3f}")
    ax.set_xlabel("frame t")
    ax.set_ylabel("bits per pixel (test)")
    ax.set_xticks(t)
    ax.legend(fontsize=8)
    ax.set_title(f"-log p(x_t | x_<t) per pixel, {len(bits)} test sequences", fontsize=9)
    return save_figure(fig, out, "frame_bits")
