"""RealNVP for vectors: affine coupling layers with alternating masks and optional batch norm.

Dinh, Sohl-Dickstein and Bengio 2016, "Density estimation using Real NVP",
https://arxiv.org/abs/1605.08803. The vector form is the one of the paper's 2-D experiments
and of the MAF paper's tabular baseline (Papamakarios et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.nn.mlp import MLP
from flowforge.transforms import (
    ActNorm,
    Affine,
    BatchNorm,
    Compose,
    Coupling,
    LULinear,
    Transform,
    alternating_mask,
    depth_scale_bound,
    half_mask,
)

__all__ = ["realnvp"]


def realnvp(
    features: int,
    couplings: int = 5,
    hidden: Sequence[int] = (32, 32),
    activation: str = "relu",
    mask: str = "alternating",
    batch_norm: bool = False,
    scale_bound: float | None = None,
    glow: bool = False,
    context_features: int = 0,
) -> Flow:
    """Builds a RealNVP flow over vectors of ``features`` dimensions.

    Defaults: the classic toy experiment (5 affine couplings with MLPs of 2 x 32 ReLU units,
    the conditioning half swapping between layers). Each coupling is
    ``z_b = x_b * exp(s(x_a)) + t(x_a)`` with a soft-bounded log-scale and a conditioner that
    starts at output 0 (:func:`~flowforge.nn.init.antisymmetric_start`), so the flow starts at
    the identity. The MAF paper's tabular baseline uses 5 or
    10 couplings with batch norm between them (``batch_norm=True``).

    Arguments:
        features: data dimension (at least 2).
        couplings: number of affine couplings.
        hidden: hidden layer sizes of each coupling's MLP.
        activation: MLP activation.
        mask: ``"alternating"`` (odd/even indices) or ``"half"`` (first/second half).
        batch_norm: insert :class:`BatchNorm` between couplings.
        scale_bound: bound on each log-scale; ``None``: :func:`depth_scale_bound`, 5 for
            shallow flows and less for deep ones, so the total stays within
            :data:`LOG_SCALE_BUDGET` nats per dimension (finite far from the data).
        glow: Glow's step for vectors (Kingma and Dhariwal 2018,
            https://arxiv.org/abs/1807.03039): an actnorm (data-initialised per-feature
            affine) and a learned invertible linear map (the 1x1 convolution, in LU form)
            before each coupling, so every coupling sees a learned mixture of all features.
        context_features: size of a conditioning vector (0: unconditional).
    """
    if features < 2:
        raise ValueError(f"'features' should be at least 2, got {features}")
    if couplings < 1:
        raise ValueError(f"'couplings' should be positive, got {couplings}")
    masks = {
        "alternating": lambda i: alternating_mask(features, parity=i % 2),
        "half": lambda i: half_mask(features, first=i % 2 == 0),
    }
    if mask not in masks:
        raise ValueError(f"'mask' should be one of {sorted(masks)}, got {mask!r}")
    # each dimension is transformed by every other coupling
    bound = depth_scale_bound(-(-couplings // 2)) if scale_bound is None else scale_bound
    layers: list[Transform] = []
    for i in range(couplings):
        if batch_norm and i > 0:
            layers.append(BatchNorm(features))
        if glow:
            layers += [ActNorm(features), LULinear(features)]
        layers.append(
            Coupling(
                masks[mask](i),
                lambda a, b: MLP(a, b, hidden, activation, context_features),
                Affine(bound),
            )
        )
    return Flow(Compose(layers), StandardNormal(features))
