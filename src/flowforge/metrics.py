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
- :func:`frechet_distance`: the Fréchet distance of Heusel et al. 2017 (the FID,
  https://arxiv.org/abs/1706.08500) between Gaussians fitted to two feature sets,
  :math:`\lVert \mu_a - \mu_b\rVert^2 + \operatorname{tr}(\Sigma_a + \Sigma_b
  - 2(\Sigma_a\Sigma_b)^{1/2})`, in float64 by symmetric eigen-decompositions.
- :func:`class_coverage`: a classifier's predicted class of each sample; a class is covered
  when it holds at least ``min_share`` of its fair share ``n / K`` (as the modes above), with
  the largest class's share, the entropy of the class frequencies and the mean confidence.
- For MNIST digits (:data:`DIGIT_IMAGE_DATA`: ``mnist``, ``binarized_mnist``), both measures
  read the **shipped classifier** (:class:`DigitClassifier`, :func:`load_digit_classifier`):
  a small convolutional network trained by ``scripts/train_mnist_classifier.py`` on grey and
  binarized MNIST training images, whose test accuracies travel in its file's metadata. The
  FD uses its 128 penultimate-layer features (:func:`digit_quality`). Other image data
  (Fashion-MNIST, CIFAR-10, the 8x8 digits) get neither: the classifier knows 28x28 digits
  only.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowforge.data.toy import MODES

__all__ = [
    "DIGIT_CLASSIFIER_FILE",
    "DIGIT_IMAGE_DATA",
    "KNOWN_MODES",
    "MMD",
    "ClassCoverage",
    "DigitClassifier",
    "ModeStatistics",
    "class_coverage",
    "digit_images",
    "digit_quality",
    "frechet_distance",
    "frechet_distance_gaussians",
    "load_digit_classifier",
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


class DigitClassifier(nn.Module):
    """A small convolutional classifier of 28x28 digits in ``[0, 1]``, whose penultimate layer
    is the feature space of :func:`frechet_distance` on MNIST.

    Three blocks of 3x3 convolution, ReLU and 2x2 max-pooling (16, 32, 64 channels:
    28 -> 14 -> 7 -> 3 pixels), a fully connected ReLU layer of ``features`` units and a linear
    layer to the 10 class logits; about 98,000 parameters for ``features = 128``.
    """

    def __init__(self, features: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, classes)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate layer's ``(n, features)`` activations of images ``(n, 1, 28, 28)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(n, classes)``."""
        return self.head(self.body(x))


#: the shipped weights and metadata of :class:`DigitClassifier`, written by
#: ``scripts/train_mnist_classifier.py``: an ``.npz`` of float32 arrays named as the module's
#: ``state_dict`` plus ``meta``, a JSON string (test accuracies, seed, command, torch version)
DIGIT_CLASSIFIER_FILE = Path(__file__).resolve().parent / "metrics_assets" / "mnist_classifier.npz"


@functools.cache
def load_digit_classifier(
    path: Path = DIGIT_CLASSIFIER_FILE,
) -> tuple[DigitClassifier, dict[str, Any]]:
    """The shipped MNIST classifier (or the one written to ``path``), in eval mode, float32,
    on the CPU, and its metadata.

    Read with ``numpy.load(allow_pickle=False)``: the file holds arrays and one JSON string,
    never code. Cached: every call with the same ``path`` returns the same module.
    """
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        state = {k: torch.from_numpy(f[k]) for k in f.files if k != "meta"}
    model = DigitClassifier(features=int(meta["features"]))
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model, meta


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
    :func:`digit_quality`). Like every FD estimate it is biased upwards at finite ``n``
    (Chong and Forsyth 2020): compare values computed from the same numbers of points.
    """
    a, b = _flat(features_a), _flat(features_b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"the Fréchet distance needs at least 2 points of each, got {len(a)}, {len(b)}"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    return frechet_distance_gaussians(a.mean(0), a.T.cov(), b.mean(0), b.T.cov())


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


#: data sets of 28x28 MNIST digits the shipped classifier reads, and the value of a white pixel
#: in their units (samples and test images are divided by it): ``mnist`` holds raw pixel values
#: 0..255 (flowforge's image loaders leave dequantization and scaling to the model, whose
#: samples come back in the same units), ``binarized_mnist`` binary pixels (its models' samples
#: are Bernoulli means in [0, 1] or binary draws)
DIGIT_IMAGE_DATA: dict[str, float] = {"mnist": 255.0, "binarized_mnist": 1.0}


def digit_images(x: Tensor, data: str) -> Tensor:
    """Samples or test points of the digit data set ``data`` as the classifier's input: images
    ``(n, 1, 28, 28)`` in ``[0, 1]`` (divided by :data:`DIGIT_IMAGE_DATA` ``[data]``, then
    clamped, since a flow's samples may stray a little outside the pixel range)."""
    if data not in DIGIT_IMAGE_DATA:
        raise ValueError(
            f"no digit classifier for data set {data!r}; one of {list(DIGIT_IMAGE_DATA)}"
        )
    x = x.detach().float().cpu()
    if x[0].numel() != 28 * 28:
        raise ValueError(f"digit images are 28x28, got points of {x[0].numel()} values")
    return (x.reshape(len(x), 1, 28, 28) / DIGIT_IMAGE_DATA[data]).clamp(0, 1)


@torch.no_grad()
def digit_quality(
    samples: Tensor, reference: Tensor, data: str, batch_size: int = 1000
) -> dict[str, Any]:
    """The image measures of samples of an MNIST data set (:data:`DIGIT_IMAGE_DATA`), both in
    the shipped classifier's terms (:func:`load_digit_classifier`): ``fd``, the Fréchet
    distance between the penultimate-layer features of ``samples`` and ``reference``
    (:func:`frechet_distance`), and the samples' class coverage (:func:`class_coverage`) as
    ``classes_classes``, ``classes_covered``, ``classes_coverage``, ``classes_largest_share``,
    ``classes_entropy``, ``classes_confidence`` and ``classes_counts``."""
    model, _ = load_digit_classifier()

    def features(x: Tensor) -> Tensor:
        images = digit_images(x, data)
        return torch.cat([model.features(b) for b in images.split(batch_size)])

    f_samples, f_reference = features(samples), features(reference)
    probabilities = torch.softmax(model.head(f_samples), 1)
    coverage = asdict(class_coverage(probabilities))
    return {
        "fd": frechet_distance(f_samples, f_reference),
        **{f"classes_{k}": v for k, v in coverage.items()},
    }


def sample_quality(
    samples: Tensor, reference: Tensor, data: str | None = None, bandwidth: float | None = None
) -> dict[str, Any]:
    """Every measure that applies: ``mmd`` (and its ``mmd_stderr``, ``mmd_bandwidth``),
    ``swd``; for a data set of :data:`KNOWN_MODES` the mode statistics (``modes_*``); for MNIST
    digits (:data:`DIGIT_IMAGE_DATA`) the classifier's Fréchet distance ``fd`` and class
    coverage (``classes_*``, :func:`digit_quality`)."""
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
    if data in DIGIT_IMAGE_DATA:
        out.update(digit_quality(samples, reference, data))
    return out
