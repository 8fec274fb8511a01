"""NSF: neural spline flows with rational-quadratic splines, coupling or autoregressive.

Durkan, Bekasov, Murray and Papamakarios 2019, "Neural Spline Flows",
https://arxiv.org/abs/1906.04032.
"""

from __future__ import annotations

from flowforge.distributions import base_distribution
from flowforge.flows import Flow
from flowforge.models._autoregressive import autoregressive_stack
from flowforge.nn.mlp import MLP
from flowforge.transforms import (
    Compose,
    Coupling,
    LULinear,
    RationalQuadraticSpline,
    Transform,
    half_mask,
)

__all__ = ["nsf"]

KINDS = ("autoregressive", "coupling")


def nsf(
    features: int,
    kind: str = "autoregressive",
    layers: int = 10,
    hidden: int = 256,
    residual_blocks: int = 2,
    bins: int = 8,
    bound: float = 3.0,
    activation: str = "relu",
    base: str = "normal",
    components: int = 8,
    context_features: int = 0,
) -> Flow:
    """Builds an RQ-NSF over vectors of ``features`` dimensions.

    Each step is an LU-decomposed linear map followed by a rational-quadratic spline layer
    (:class:`~flowforge.transforms.spline.RationalQuadraticSpline`, identity outside
    ``[-bound, bound]``); one more LU linear map ends the flow. ``kind="autoregressive"``
    (RQ-NSF (AR)) uses a residual MADE conditioner: density in one pass per step, sampling in
    ``D``. ``kind="coupling"`` (RQ-NSF (C)) splits the features in halves, alternating which
    half conditions, with an MLP conditioner of ``residual_blocks + 1`` hidden layers of width
    ``hidden`` (a plain stand-in for the paper's residual network): both directions one pass.

    Paper defaults (Table 5, POWER/GAS/HEPMASS): 10 steps, 2 residual blocks of 256 units,
    ``K = 8`` bins, tail bound ``B = 3``, Adam lr 5e-4 with cosine annealing, batch 512,
    400k steps, gradient clipping at 5 (MINIBOONE: 1 block of 64 units, 4 bins).

    Arguments:
        features: data dimension (at least 2 for ``kind="coupling"``).
        kind: ``"autoregressive"`` or ``"coupling"``.
        layers: number of spline steps.
        hidden: conditioner width.
        residual_blocks: residual blocks of the MADE (autoregressive) or hidden layers minus
            one of the MLP (coupling).
        bins: spline bins ``K``.
        bound: spline interval half-width ``B``.
        activation: conditioner activation.
        base: ``"normal"`` (the paper) or ``"mixture"`` (a
            :class:`~flowforge.distributions.GaussianMixture` started from the data).
        components: the most components of the mixture base.
        context_features: size of the conditioning vector (0: unconditional).
    """
    if kind not in KINDS:
        raise ValueError(f"'kind' should be one of {list(KINDS)}, got {kind!r}")
    if hidden < 1:
        raise ValueError(f"'hidden' should be positive, got {hidden}")
    if kind == "autoregressive":
        steps = autoregressive_stack(
            features,
            layers,
            lambda: RationalQuadraticSpline(bins, bound),
            (hidden,),
            "natural",  # the LU layers mix the order between steps
            residual_blocks,
            activation,
            False,
            context_features,
        )
    else:
        if features < 2:
            raise ValueError(f"'features' should be at least 2 for a coupling NSF, got {features}")
        if layers < 1:
            raise ValueError(f"'layers' should be positive, got {layers}")
        widths = (hidden,) * (residual_blocks + 1)
        steps = [
            Coupling(
                half_mask(features, first=i % 2 == 0),
                lambda a, b: MLP(a, b, widths, activation, context_features),
                RationalQuadraticSpline(bins, bound),
            )
            for i in range(layers)
        ]
    transforms: list[Transform] = []
    for step in steps:
        transforms += [LULinear(features), step]
    transforms.append(LULinear(features))
    return Flow(Compose(transforms), base_distribution(base, features, components))
