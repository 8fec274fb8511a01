"""Every sample-quality measure that applies to a data set's samples, as one flat mapping
(what ``flowforge compare`` records per run)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from torch import Tensor

from flowforge.metrics.coverage import KNOWN_MODES, mode_statistics
from flowforge.metrics.digit_classifier import DIGIT_IMAGE_DATA, digit_quality
from flowforge.metrics.distances import mmd, sliced_wasserstein

__all__ = ["sample_quality"]


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
