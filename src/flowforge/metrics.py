r"""Sample-quality measures for any generative model, likelihood or not.

- :func:`mmd`: the unbiased estimate of the squared maximum mean discrepancy (Gretton et al.
  2012, https://jmlr.org/papers/v13/gretton12a.html) with the **Gaussian kernel**
  :math:`k(a, b) = \exp(-\lVert a - b\rVert^2 / (2\sigma^2))`; the bandwidth :math:`\sigma` is
  given, or by the **median heuristic**: the median distance between pairs of *reference*
  points (:func:`median_bandwidth`), so it does not move with the model. Its standard error
  is the first-order (Hoeffding) approximation :math:`2\,\mathrm{sd}_i(\bar h_i)/\sqrt n`.
  0 in expectation for identical distributions (the estimate may be slightly negative).
- :func:`sliced_wasserstein`: the sliced 2-Wasserstein distance (Rabin et al. 2011;
  Deshpande et al. 2018): the root mean over random unit directions of the squared
  1-D Wasserstein-2 distance between the projections (sorted samples), with a fixed seed.
- :func:`mode_statistics`: for mixtures of isotropic Gaussians with known centres (8gaussians,
  the 25-Gaussian grid of :data:`KNOWN_MODES`): a sample belongs to its nearest mode when it is
  within :math:`3\sigma` of its centre (Euclidean), else it is **off-manifold**; a mode is
  **covered** when it holds at least ``min_share`` of its fair share ``n / K`` of the samples
  (Srivastava et al. 2017's VEEGAN count modes and "high-quality" samples the same way).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from flowforge.data.toy import MODES

__all__ = [
    "KNOWN_MODES",
    "MMD",
    "ModeStatistics",
    "median_bandwidth",
    "mmd",
    "mode_statistics",
    "sample_quality",
    "sliced_wasserstein",
]


def _flat(x: Tensor) -> Tensor:
    return x.detach().reshape(len(x), -1).double().cpu()


def median_bandwidth(reference: Tensor, max_points: int = 1000) -> float:
    """The median pairwise distance between (the first ``max_points``) reference points."""
    r = _flat(reference)[:max_points]
    d = torch.cdist(r, r)
    off = d[~torch.eye(len(r), dtype=torch.bool)]
    return float(off.median()) if off.numel() else 1.0


@dataclass
class MMD:
    """An MMD estimate: ``value`` (unbiased MMD^2), ``stderr`` and the kernel ``bandwidth``."""

    value: float
    stderr: float
    bandwidth: float


def mmd(samples: Tensor, reference: Tensor, bandwidth: float | None = None) -> MMD:
    """Unbiased MMD^2 between ``samples`` and ``reference`` (the first ``min(n, m)`` of each,
    paired for the standard error), Gaussian kernel of ``bandwidth`` (default: the median
    heuristic on ``reference``)."""
    n = min(len(samples), len(reference))
    if n < 2:
        raise ValueError(
            f"MMD needs at least 2 points of each, got {len(samples)}, {len(reference)}"
        )
    x, y = _flat(samples)[:n], _flat(reference)[:n]
    s = median_bandwidth(y) if bandwidth is None else float(bandwidth)
    if not s > 0:
        raise ValueError(f"'bandwidth' should be positive, got {s}")

    def k(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * s * s))

    kxy = k(x, y)
    h = k(x, x) + k(y, y) - kxy - kxy.T
    h.fill_diagonal_(0.0)
    row = h.sum(1) / (n - 1)
    return MMD(float(row.mean()), float(2 * row.std() / math.sqrt(n)), s)


def sliced_wasserstein(
    samples: Tensor, reference: Tensor, projections: int = 256, seed: int = 0
) -> float:
    """Sliced 2-Wasserstein distance over ``projections`` random directions (drawn from
    ``seed``) between the first ``min(n, m)`` points of each set."""
    n = min(len(samples), len(reference))
    if n < 1:
        raise ValueError("sliced Wasserstein needs points")
    x, y = _flat(samples)[:n], _flat(reference)[:n]
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ dirs, 0)
    py, _ = torch.sort(y @ dirs, 0)
    return float((px - py).pow(2).mean().sqrt())


#: centres and standard deviation of the mixtures whose modes are known, by data set:
#: :data:`flowforge.data.toy.MODES` (``8gaussians``: radius 4, sd 0.5, all / 1.414;
#: ``25gaussians``: the grid of VEEGAN and PacGAN, centres {-4, -2, 0, 2, 4}^2, sd 0.05)
KNOWN_MODES: dict[str, tuple[Tensor, float]] = {
    name: (torch.from_numpy(centers).double(), sd) for name, (centers, sd) in MODES.items()
}


@dataclass
class ModeStatistics:
    """Mode coverage of samples from a mixture with known modes.

    Attributes:
        modes: the number of modes ``K``.
        covered: modes holding at least ``min_share * n / K`` samples.
        coverage: ``covered / K``.
        off_manifold: the share of samples farther than ``3 sigma`` from every centre.
        counts: samples per mode.
    """

    modes: int
    covered: int
    coverage: float
    off_manifold: float
    counts: list[int]


def mode_statistics(
    samples: Tensor, centers: Tensor, sigma: float, min_share: float = 0.25
) -> ModeStatistics:
    """Which modes the samples cover and how many are off-manifold (module docstring)."""
    if len(samples) < 1:
        raise ValueError("mode statistics need samples")
    x, c = _flat(samples), centers.double()
    dist = torch.cdist(x, c)  # (n, K)
    nearest, which = dist.min(1)
    on = nearest <= 3 * sigma
    k = len(c)
    counts = torch.bincount(which[on], minlength=k)
    covered = int((counts >= min_share * len(x) / k).sum())
    return ModeStatistics(
        modes=k,
        covered=covered,
        coverage=covered / k,
        off_manifold=float((~on).double().mean()),
        counts=[int(v) for v in counts],
    )


def sample_quality(
    samples: Tensor, reference: Tensor, data: str | None = None, bandwidth: float | None = None
) -> dict[str, Any]:
    """Every measure that applies: ``mmd`` (and its ``mmd_stderr``, ``mmd_bandwidth``),
    ``swd``, and for a data set of :data:`KNOWN_MODES` the mode statistics."""
    m = mmd(samples, reference, bandwidth)
    out: dict[str, Any] = {
        "mmd": m.value,
        "mmd_stderr": m.stderr,
        "mmd_bandwidth": m.bandwidth,
        "swd": sliced_wasserstein(samples, reference),
    }
    if data in KNOWN_MODES:
        centers, sigma = KNOWN_MODES[data]
        stats = asdict(mode_statistics(samples, centers, sigma))
        out.update({f"modes_{k}": v for k, v in stats.items()})
    return out
