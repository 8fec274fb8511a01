r"""The continuous ranked probability score (CRPS) and Rasul et al.'s CRPS-sum.

For a forecast distribution :math:`F` of a scalar and the value :math:`y` that came,

.. math:: \mathrm{CRPS}(F, y) = \int (F(z) - \mathbb 1[y \le z])^2\,dz
    = \mathbb E|X - y| - \tfrac12\,\mathbb E|X - X'|, \qquad X, X' \sim F

(Gneiting and Raftery 2007), in the units of :math:`y`; lower is better, and it reduces to the
absolute error for a point forecast. From :math:`S` samples, :func:`crps_samples` is the
unbiased ("fair") estimate

.. math:: \widehat{\mathrm{CRPS}} = \frac1S \sum_s |X_s - y|
    - \frac{1}{2S(S-1)} \sum_{s \ne s'} |X_s - X_{s'}|,

whose expectation is the CRPS of :math:`F` for every :math:`S` (the pair sum in
:math:`O(S \log S)` from the sorted samples). For a Gaussian :math:`N(\mu, \sigma^2)` it is
closed, :func:`crps_gaussian`:
:math:`\sigma\,[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt\pi]`, :math:`z = (y - \mu)/\sigma`.

**CRPS-sum** (Rasul et al. 2021, https://arxiv.org/abs/2002.06103, section 4): the CRPS of
the forecast of the sum over the :math:`D` series, :math:`\sum_i x_{t,i}`, summed over the
forecast time points and divided by the sum of the absolute summed targets,
:math:`\sum_t \mathrm{CRPS}(F_{\mathrm{sum},t}, \sum_i y_{t,i}) / \sum_t |\sum_i y_{t,i}|`
(as GluonTS's evaluator normalises the aggregated series). It rewards a forecaster that gets
the dependence between the series right: the spread of a sum depends on their correlations.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["crps_gaussian", "crps_samples"]

_SQRT_PI = math.sqrt(math.pi)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def crps_samples(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fair CRPS estimate of each of ``n`` forecasts from its samples ``(S, n)`` at the
    values ``y`` ``(n,)``; ``(n,)`` float64."""
    x = np.asarray(samples, np.float64)
    y = np.asarray(y, np.float64)
    s = x.shape[0]
    if s < 2:
        raise ValueError(f"CRPS from samples needs at least 2 samples, got {s}")
    error = np.abs(x - y).mean(0)
    ranked = np.sort(x, axis=0)
    weights = (2 * np.arange(s) - s + 1)[:, None]  # sum_{i<j} (x_(j) - x_(i)) = sum w_j x_(j)
    spread = (weights * ranked).sum(0) / (s * (s - 1))  # (1 / 2S(S-1)) sum_{s != s'} |.|
    return error - spread


def crps_gaussian(mean: np.ndarray, sd: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The CRPS of :math:`N(\\mu, \\sigma^2)` at ``y``, element-wise, float64."""
    mean, sd, y = (np.asarray(a, np.float64) for a in (mean, sd, y))
    z = (y - mean) / sd
    cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return sd * (z * (2 * cdf - 1) + 2 * pdf - 1 / _SQRT_PI)
