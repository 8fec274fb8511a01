r"""The Gaussian vector autoregression VAR(:math:`p`): the forecaster a flow is measured against.

.. math:: x_t = \nu + \sum_{j=1}^{p} A_j x_{t-j} + \varepsilon_t, \qquad
    \varepsilon_t \sim N(0, \Sigma)

fitted by least squares on the training pairs (the maximum-likelihood estimate given the
first :math:`p` values of each window: :math:`[\nu, A_1, \dots, A_p]` by ordinary least
squares, :math:`\Sigma` the mean outer product of the residuals; Lütkepohl 2005, chapter 3).
:func:`select_var` fits every order :math:`p = 0, \dots, k` (``0``: one Gaussian, no
dynamics) on the pairs of a window of :math:`k` values (:mod:`flowforge.data.series`, the
last :math:`p` of them) and keeps the order of the best validation likelihood.

The :math:`h`-step forecast is Gaussian too (:meth:`GaussianVAR.moments`): its mean runs the
recursion with the forecast means in place of the unknown values, its covariance is
:math:`\sum_{i<h} \Psi_i \Sigma \Psi_i^\top` with :math:`\Psi_0 = I`,
:math:`\Psi_i = \sum_{j=1}^{\min(i,p)} A_j \Psi_{i-j}` (Lütkepohl 2005, section 2.2.2).
NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GaussianVAR", "fit_var", "select_var"]

_LOG_2PI = math.log(2 * math.pi)


def lagged(context: np.ndarray, dim: int, order: int) -> np.ndarray:
    """The last ``order`` values of each window ``(n, k D)`` (oldest first), newest first:
    ``(n, order, D)`` with ``[:, j - 1]`` the value :math:`x_{t-j}`."""
    window = np.asarray(context, np.float64).reshape(len(context), -1, dim)
    if order > window.shape[1]:
        raise ValueError(f"VAR order {order} exceeds the window of {window.shape[1]} steps")
    return window[:, ::-1][:, :order]


@dataclass(frozen=True)
class GaussianVAR:
    """A fitted VAR(:math:`p`): ``intercept`` :math:`\\nu` ``(D,)``, ``coefs`` ``(p, D, D)``
    with ``coefs[j - 1]`` :math:`= A_j`, the noise covariance ``cov`` :math:`\\Sigma`."""

    intercept: np.ndarray
    coefs: np.ndarray
    cov: np.ndarray

    @property
    def order(self) -> int:
        return int(self.coefs.shape[0])

    @property
    def dim(self) -> int:
        return int(self.intercept.shape[0])

    def mean(self, context: np.ndarray) -> np.ndarray:
        """The one-step forecast mean ``(n, D)`` given windows ``(n, k D)``."""
        lags = lagged(context, self.dim, self.order)
        return self.intercept + np.einsum("jde,nje->nd", self.coefs, lags)

    def log_prob(self, x: np.ndarray, context: np.ndarray) -> np.ndarray:
        """:math:`\\log N(x_t; \\nu + \\sum_j A_j x_{t-j}, \\Sigma)` of each row ``(n,)``."""
        chol = np.linalg.cholesky(self.cov)
        z = np.linalg.solve(chol, (np.asarray(x, np.float64) - self.mean(context)).T)
        log_det = 2 * np.log(np.diag(chol)).sum()
        return -0.5 * ((z**2).sum(0) + log_det + self.dim * _LOG_2PI)

    def moments(self, context: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """The Gaussian forecasts 1 to ``horizon`` steps ahead of each window: means
        ``(n, horizon, D)`` and covariances ``(horizon, D, D)`` (the same for every window)."""
        p, d = self.order, self.dim
        past = list(lagged(context, d, p).transpose(1, 0, 2))  # newest first, each (n, D)
        psi = [np.eye(d)]
        means, covs, cov = [], [], np.zeros((d, d))
        for h in range(horizon):
            m = self.intercept + sum(
                (past[j] @ self.coefs[j].T for j in range(p)), np.zeros_like(self.intercept)
            )
            past = [m, *past[:-1]] if p else past
            means.append(m * np.ones((len(context), 1)))
            cov = cov + psi[h] @ self.cov @ psi[h].T
            covs.append(cov)
            psi.append(sum((self.coefs[j] @ psi[h - j] for j in range(min(h + 1, p))), 0 * cov))
        return np.stack(means, 1), np.stack(covs)


def fit_var(x: np.ndarray, context: np.ndarray, order: int) -> GaussianVAR:
    """Least-squares VAR(``order``) of the targets ``x`` ``(n, D)`` on their windows
    ``(n, k D)``."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    design = np.concatenate([np.ones((n, 1)), lagged(context, d, order).reshape(n, -1)], 1)
    if n <= design.shape[1] + d:
        raise ValueError(f"VAR({order}) of {d} series needs more than {design.shape[1] + d} rows")
    beta = np.linalg.lstsq(design, x, rcond=None)[0]  # (1 + p D, D)
    residual = x - design @ beta
    coefs = beta[1:].reshape(order, d, d).transpose(0, 2, 1)  # coefs[j][out, in]
    return GaussianVAR(beta[0], coefs, residual.T @ residual / n)


def select_var(
    train: np.ndarray,
    train_context: np.ndarray,
    val: np.ndarray,
    val_context: np.ndarray,
    window: int,
) -> tuple[GaussianVAR, dict[int, float]]:
    """The VAR of the order :math:`p \\le` ``window`` with the best mean validation
    log-likelihood, fitted on the training pairs; and that mean for every order tried."""
    scores, fits = {}, {}
    for p in range(window + 1):
        try:
            fits[p] = fit_var(train, train_context, p)
        except ValueError:  # too few rows for this order and the higher ones
            break
        scores[p] = float(fits[p].log_prob(val, val_context).mean())
    if not scores:
        raise ValueError(f"too few training rows ({len(train)}) for a VAR")
    best = max(scores, key=lambda p: scores[p])
    return fits[best], scores
