r"""How well a flow's map is conditioned, and a named warning when it is too badly.

A composite of well-behaved layers can squeeze some directions by :math:`e^{-30}` and stretch
others, with no value leaving the float range: the Jacobian's condition number
:math:`\kappa = \sigma_{\max}/\sigma_{\min}` then passes :math:`1/\varepsilon`, and no algorithm
can recover :math:`x` from a rounded :math:`z = f(x)` (a rounding of :math:`z` by
:math:`\varepsilon |z|` moves :math:`f^{-1}(z)` by up to :math:`\kappa \varepsilon |x|`). Such an
inverse (or sample) is a finite wrong answer unless someone looks:
:func:`check_conditioning` looks, and warns with :class:`IllConditionedWarning` when
:math:`\kappa \varepsilon` exceeds a tolerance.

The check is exact and not free: :func:`condition_numbers` builds each point's full Jacobian
(one backward pass per dimension, in float64) and its singular values, so it is meant for a
few points of a model (tens of dimensions: milliseconds; a 784-pixel image: seconds), in the
stress kit (:mod:`flowforge.testing.stress`), or when a sampled result looks suspicious; it
is not run inside ``Flow.sample``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["IllConditionedWarning", "check_conditioning", "condition_numbers"]


class IllConditionedWarning(RuntimeWarning):
    """The map's Jacobian is so badly conditioned that its inverse loses the answer in this
    dtype (``condition * eps`` above the tolerance): round trips and samples are not to be
    trusted to the tolerance, even though they are finite."""


def _jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``(points, out, in)``: each point's Jacobian of ``fn`` (points independent), one
    backward pass per output dimension."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x).reshape(x.shape[0], -1)
        dim = y.shape[1]
        rows = []
        for i in range(dim):
            (g,) = torch.autograd.grad(y[:, i].sum(), x, retain_graph=i < dim - 1)
            rows.append(g.reshape(x.shape[0], -1))
    return torch.stack(rows, dim=1)


def condition_numbers(
    transform: nn.Module, x: Tensor, context: Tensor | None = None, max_points: int = 16
) -> Tensor:
    r"""Skeel's condition number :math:`\| |J^{-1}| |J| \|_\infty` of ``transform``'s map at
    each of the first ``max_points`` points of ``x`` (``transform(x, context)`` returns
    ``(z, ladj)``; ``transform.inverse(z, context)`` likewise), computed in float64 on a copy
    in eval mode.

    :math:`J^{-1}` is the Jacobian of the inverse pass at :math:`z = f(x)` (autograd through
    the layers' own inverses), not a matrix inverse of :math:`J`, which float64 cannot form
    when :math:`\kappa > 10^{16}`. Skeel's form is blind to per-dimension scales that a
    triangular inverse undoes exactly (a diagonal map has condition 1, however different its
    scales), which the 2-norm condition number is not: it called a sum-of-squares polynomial
    flow, whose round trip is exact to float32, ill-conditioned at :math:`10^{13}`."""
    model = copy.deepcopy(transform).double().eval()
    x = x[:max_points].detach().double()
    ctx = None if context is None else context[:max_points].double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SlowDirectionWarning of an autoregressive inverse
        jac = _jacobian(lambda v: model(v, ctx)[0], x)
        with torch.no_grad():
            z = model(x, ctx)[0]
        jac_inv = _jacobian(lambda v: model.inverse(v, ctx)[0], z)
    skeel = (jac_inv.abs() @ jac.abs()).sum(-1).amax(-1)
    # J^-1 J = I when float64 holds both; where it does not (a Jacobian underflowed to 0, or
    # the condition passed 1e13), the map is not numerically invertible even in float64
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype)
    off = (jac_inv @ jac - eye).abs().flatten(1).amax(-1)
    good = torch.isfinite(skeel) & (off <= 1e-2)
    return torch.where(good, skeel, torch.full_like(skeel, math.inf))


def check_conditioning(
    transform: nn.Module,
    x: Tensor,
    context: Tensor | None = None,
    dtype: torch.dtype | None = None,
    tol: float = 1e-4,
    max_points: int = 16,
) -> float:
    """The worst condition number at ``x``; warns :class:`IllConditionedWarning` when
    ``condition * eps(dtype) > tol`` (``dtype``: the one the map is used in, default ``x``'s):
    the relative accuracy a round trip or a sample can be trusted to is then worse than
    ``tol``."""
    dtype = dtype or x.dtype
    kappa = float(condition_numbers(transform, x, context, max_points).max())
    eps = torch.finfo(dtype).eps
    if not kappa * eps <= tol:  # NaN (a broken Jacobian) warns too
        warnings.warn(
            f"ill-conditioned map: Jacobian condition number {kappa:.1e} at these inputs, so "
            f"in {str(dtype).removeprefix('torch.')} (eps {eps:.1e}) an inverse or sample can "
            f"be off by about {kappa * eps:.1e} relative to |x| (tolerance {tol:g})",
            IllConditionedWarning,
            stacklevel=2,
        )
    return kappa
