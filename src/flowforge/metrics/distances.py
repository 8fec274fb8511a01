r"""Distances between two sets of points, for any generative model, likelihood or not.

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
- :func:`frechet_distance`: the Fréchet distance of Heusel et al. 2017 (the FID,
  https://arxiv.org/abs/1706.08500) between Gaussians fitted to two feature sets,
  :math:`\lVert \mu_a - \mu_b\rVert^2 + \operatorname{tr}(\Sigma_a + \Sigma_b
  - 2(\Sigma_a\Sigma_b)^{1/2})`, in float64 by symmetric eigen-decompositions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "MMD",
    "as_rows",
    "frechet_distance",
    "frechet_distance_gaussians",
    "median_bandwidth",
    "mmd",
    "sliced_wasserstein",
]


def as_rows(x: Tensor) -> Tensor:
    """Points ``(n, ...)`` as detached float64 rows ``(n, d)`` on the CPU."""
    return x.detach().reshape(len(x), -1).double().cpu()


def median_bandwidth(reference: Tensor, max_points: int = 1000) -> float:
    """The median pairwise distance between (the first ``max_points``) reference points."""
    r = as_rows(reference)[:max_points]
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
    x, y = as_rows(samples)[:n], as_rows(reference)[:n]
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
    x, y = as_rows(samples)[:n], as_rows(reference)[:n]
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ dirs, 0)
    py, _ = torch.sort(y @ dirs, 0)
    return float((px - py).pow(2).mean().sqrt())


def _psd_sqrt(s: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    below 0 from rounding are clamped to 0)."""
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance_gaussians(
    mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor
) -> float:
    r"""The squared Fréchet (2-Wasserstein) distance between :math:`N(\mu_a, \Sigma_a)` and
    :math:`N(\mu_b, \Sigma_b)` (Dowson and Landau 1982):

    .. math::
        \lVert \mu_a - \mu_b \rVert^2
        + \operatorname{tr}\bigl(\Sigma_a + \Sigma_b - 2 (\Sigma_a \Sigma_b)^{1/2}\bigr).

    :math:`\Sigma_a \Sigma_b` is not symmetric, but it is similar to the symmetric
    :math:`M = \Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}`, so
    :math:`\operatorname{tr}(\Sigma_a \Sigma_b)^{1/2} = \sum_i \sqrt{\lambda_i(M)}`: two
    symmetric eigen-decompositions in float64 (tiny negative eigenvalues from rounding
    clamped to 0), no general matrix square root. The result is clamped at 0 against
    rounding.
    """
    mean_a, mean_b = mean_a.double(), mean_b.double()
    cov_a, cov_b = cov_a.double(), cov_b.double()
    root_a = _psd_sqrt(cov_a)
    m = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    value = (mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(value), 0.0)


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    r"""The Fréchet distance between two feature sets ``(n, d)`` and ``(m, d)``: that of
    Gaussians with their means and (unbiased) covariances, :func:`frechet_distance_gaussians`
    (squared, as the FID reports it).

    This is the FID of Heusel et al. 2017 (https://arxiv.org/abs/1706.08500) in another
    feature space (there Inception-v3's pool layer; here the shipped MNIST classifier's,
    :func:`~flowforge.metrics.digit_classifier.digit_quality`). Like every FD estimate it is
    biased upwards at finite ``n`` (Chong and Forsyth 2020): compare values computed from the
    same numbers of points.
    """
    a, b = as_rows(features_a), as_rows(features_b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"the Fréchet distance needs at least 2 points of each, got {len(a)}, {len(b)}"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    return frechet_distance_gaussians(a.mean(0), a.T.cov(), b.mean(0), b.T.cov())
