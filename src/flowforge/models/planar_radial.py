r"""Planar and radial flows for variational inference (Rezende and Mohamed 2015,
https://arxiv.org/abs/1505.05770).

A stack of ``K`` layers ``z_K = f_K o ... o f_1(z_0)`` on a base ``q_0``, with

.. math:: \log q_K(z_K) = \log q_0(z_0) - \sum_k \log|\det J_{f_k}(z_{k-1})|.

Each layer sits in the flow as ``Inverse(layer)``, so ``Flow.sample`` and
``Flow.sample_and_log_prob`` (what reverse-KL training and VAEs use) run the cheap maps, and
``Flow.log_prob`` of external points runs their inverses (a bounded root solve for planar,
closed form for radial).
"""

from __future__ import annotations

from collections.abc import Callable

from flowforge.distributions import BaseDistribution, DiagonalNormal, StandardNormal
from flowforge.flows import Flow
from flowforge.transforms import Compose, Inverse, Planar, Radial, Transform

__all__ = ["planar", "radial"]

_BASES: dict[str, type[BaseDistribution]] = {"normal": StandardNormal, "diagonal": DiagonalNormal}


def _stack(layer: Callable[[], Transform], features: int, layers: int, base: str) -> Flow:
    if features < 1:
        raise ValueError(f"'features' should be positive, got {features}")
    if layers < 1:
        raise ValueError(f"'layers' should be positive, got {layers}")
    if base not in _BASES:
        raise ValueError(f"'base' should be one of {sorted(_BASES)}, got {base!r}")
    transform = Compose([Inverse(layer()) for _ in range(layers)])
    return Flow(transform, _BASES[base](features))


def planar(
    features: int,
    layers: int = 8,
    base: str = "diagonal",
    context_features: int = 0,
    tol: float = 1e-9,
    max_iter: int = 100,
) -> Flow:
    """``layers`` planar maps on a Gaussian base (paper: K = 2, 8, 32 on the 2-D energies;
    K = 10 to 80 in the VAE).

    Arguments:
        features: dimension of ``z``.
        layers: number of planar maps ``K``.
        base: ``"diagonal"`` (learned mean and scale) or ``"normal"`` (standard).
        context_features: size of a context that amortises the layers' parameters.
        tol, max_iter: tolerance and cap of each layer's numerical inverse.
    """
    return _stack(lambda: Planar(features, context_features, tol, max_iter), features, layers, base)


def radial(
    features: int, layers: int = 8, base: str = "diagonal", context_features: int = 0
) -> Flow:
    """``layers`` radial maps on a Gaussian base.

    Arguments:
        features: dimension of ``z``.
        layers: number of radial maps ``K``.
        base: ``"diagonal"`` (learned mean and scale) or ``"normal"`` (standard).
        context_features: size of a context that amortises the layers' parameters.
    """
    return _stack(lambda: Radial(features, context_features), features, layers, base)
