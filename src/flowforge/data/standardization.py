r"""The fixed standardisations fitted on a training split, which sit inside a flow.

- ``"diagonal"``: per-feature mean :math:`\mu` and standard deviation :math:`\sigma`
  (:class:`~flowforge.transforms.Standardize`);
- ``"linear"``: a linear-Gaussian regression of the features :math:`x` on the context
  :math:`c` (:class:`~flowforge.transforms.LinearStandardize`):

  .. math:: [\mu, W] = \arg\min \textstyle\sum_n \lVert x_n - \mu - W c_n \rVert^2
      + \lambda \lVert W \rVert^2, \qquad
      L L^\top = \widehat{\mathrm{Cov}}(x - \mu - W c) + \epsilon\,\mathrm{diag}(\sigma^2)

  (without a context, :math:`W` is absent and :math:`L` is the Cholesky factor of the
  covariance). The small ridges :math:`\lambda = 10^{-3} n` (on standardised contexts) and
  :math:`\epsilon = 10^{-6}` keep :math:`L` well defined when columns are collinear.
  When the context is one-hot (levels of a category), each level :math:`k` gets its own mean
  and factor, :math:`L_k L_k^\top = (n_k S_k + m S)/(n_k + m)`: the level's covariance
  :math:`S_k` shrunk towards the pooled one :math:`S` with the weight of :math:`m = D + 2`
  rows, so a level with few rows stays well defined.

A flow behind a ``"linear"`` standardisation starts as that Gaussian, so its early-stopped fit
starts from the linear-Gaussian (or per-level Gaussian) baseline and only has to improve on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KINDS", "fit_standardization"]

KINDS = ("diagonal", "linear")


def fit_standardization(
    x: Tensor, context: Tensor | None = None, kind: str = "diagonal"
) -> dict[str, Tensor]:
    """``{"loc", "scale"}`` (diagonal: ``scale`` is ``(D,)``) or ``{"loc", "scale", "weight"}``
    (linear: ``scale`` is the ``(D, D)`` lower-triangular factor, ``weight`` ``(D, C)`` or
    absent without a context), in float64, fitted on the rows of ``x``."""
    if kind not in KINDS:
        raise ValueError(f"standardize: should be one of {list(KINDS)}, got {kind!r}")
    x = x.double()
    mean, std = x.mean(0), x.std(0)
    if kind == "diagonal":
        return {"loc": mean, "scale": std}
    n, d = x.shape
    if context is not None and _one_hot(context):
        return _per_level(x, context.double())
    out: dict[str, Tensor] = {}
    residual = x - mean
    loc = mean
    if context is not None and context.shape[1] > 0:
        c = context.double()
        c_mean, c_std = c.mean(0), c.std(0).clamp_min(1e-12)
        cz = (c - c_mean) / c_std
        gram = cz.T @ cz + 1e-3 * n * torch.eye(cz.shape[1], dtype=x.dtype)
        coef = torch.linalg.solve(gram, cz.T @ residual)  # (C, D) on standardised contexts
        weight = (coef / c_std[:, None]).T  # (D, C) on raw contexts
        loc = mean - weight @ c_mean
        residual = residual - cz @ coef
        out["weight"] = weight
    cov = residual.T @ residual / max(n - 1, 1) + 1e-6 * torch.diag(std**2)
    out["loc"] = loc
    out["scale"] = torch.linalg.cholesky(cov)
    return out


def _one_hot(c: Tensor) -> bool:
    return c.shape[1] > 1 and bool(((c == 0) | (c == 1)).all() and (c.sum(1) == 1).all())


def _per_level(x: Tensor, c: Tensor) -> dict[str, Tensor]:
    """A Gaussian per level of a one-hot context, covariances shrunk towards the pooled one."""
    n, d = x.shape
    counts = c.sum(0)  # (K,)
    means = (c.T @ x) / counts.clamp_min(1)[:, None]  # (K, D)
    residual = x - c @ means
    pooled = residual.T @ residual / max(n - c.shape[1], 1)
    pooled = pooled + 1e-6 * torch.diag(x.std(0) ** 2)
    m = d + 2
    factors = []
    for k in range(c.shape[1]):
        r = residual[c[:, k] == 1]
        own = r.T @ r / max(len(r) - 1, 1)
        factors.append(torch.linalg.cholesky((len(r) * own + m * pooled) / (len(r) + m)))
    return {"loc": torch.zeros(d, dtype=x.dtype), "scale": torch.stack(factors), "weight": means.T}
