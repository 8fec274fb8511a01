r"""How many of a data set's modes or classes a model's samples cover.

- :func:`mode_statistics`: for mixtures of isotropic Gaussians with known centres (8gaussians,
  the 25-Gaussian grid of :data:`KNOWN_MODES`): a sample belongs to its nearest mode when it is
  within :math:`3\sigma` of its centre (Euclidean), else it is **off-manifold**; a mode is
  **covered** when it holds at least ``min_share`` of its fair share ``n / K`` of the samples
  (Srivastava et al. 2017's VEEGAN count modes and "high-quality" samples the same way).
- :func:`class_coverage`: a classifier's predicted class of each sample; a class is covered
  when it holds at least ``min_share`` of its fair share ``n / K`` (as the modes above), with
  the largest class's share, the entropy of the class frequencies and the mean confidence
  (for MNIST digits, of the shipped classifier: :mod:`flowforge.metrics.digit_classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowforge.data.toy import MODES
from flowforge.metrics.distances import as_rows

__all__ = ["KNOWN_MODES", "ClassCoverage", "ModeStatistics", "class_coverage", "mode_statistics"]


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
    x, c = as_rows(samples), centers.double()
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


@dataclass
class ClassCoverage:
    """Which classes a classifier finds among samples.

    Attributes:
        classes: the number of classes ``K``.
        covered: classes predicted for at least ``min_share * n / K`` samples.
        coverage: ``covered / K``.
        largest_share: the share of samples in the most frequent predicted class.
        entropy: the entropy (nats) of the predicted-class frequencies; ``log K`` when every
            class is equally frequent, 0 when all samples are one class.
        confidence: the mean over samples of the classifier's largest class probability.
        counts: samples per predicted class.
    """

    classes: int
    covered: int
    coverage: float
    largest_share: float
    entropy: float
    confidence: float
    counts: list[int]


def class_coverage(probabilities: Tensor, min_share: float = 0.25) -> ClassCoverage:
    """Class coverage of samples from a classifier's class probabilities ``(n, K)``: each
    sample counts for its most probable class, and a class is covered when it holds at least
    ``min_share`` of its fair share ``n / K`` (as the modes of :func:`mode_statistics`)."""
    p = probabilities.detach().double().cpu()
    if p.dim() != 2 or len(p) < 1:
        raise ValueError(f"class coverage needs probabilities (n, K), got shape {tuple(p.shape)}")
    n, k = p.shape
    top, predicted = p.max(1)
    counts = torch.bincount(predicted, minlength=k)
    covered = int((counts >= min_share * n / k).sum())
    freq = counts.double() / n
    return ClassCoverage(
        classes=k,
        covered=covered,
        coverage=covered / k,
        largest_share=float(freq.max()),
        entropy=float(-(freq[freq > 0] * freq[freq > 0].log()).sum()),
        confidence=float(top.mean()),
        counts=[int(c) for c in counts],
    )
