"""IAF: inverse autoregressive flow, each layer the inverse of a MAF layer.

Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling 2016, "Improved Variational
Inference with Inverse Autoregressive Flow", https://arxiv.org/abs/1606.04934.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.models._autoregressive import autoregressive_stack
from flowforge.transforms import (
    Affine,
    Compose,
    Inverse,
    RationalQuadraticSpline,
    Transformer,
    depth_scale_bound,
)

__all__ = ["iaf"]

TRANSFORMERS = ("affine", "spline")


def iaf(
    features: int,
    layers: int = 5,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    order: str = "alternate",
    residual_blocks: int = 0,
    scale_bound: float | None = None,
    context_features: int = 0,
    transformer: str = "affine",
    bins: int = 8,
    bound: float = 3.0,
) -> Flow:
    """Builds an IAF over vectors of ``features`` dimensions.

    Sampling maps base noise ``u`` to ``x_i = u_i exp(s_i(u_<i)) + t_i(u_<i)``: one MADE pass
    per layer, and the log-density of the flow's own samples comes in the same pass
    (:meth:`Flow.sample_and_log_prob`, the case variational inference needs). The density of an
    external point needs ``D`` sequential steps per layer (one MADE sweep; training through it
    warns once per layer).

    Paper defaults: IAF steps stacked on a VAE encoder's diagonal Gaussian, each step a MADE
    (2 hidden layers, ELU, with the encoder's context ``h`` as extra input), the ordering
    reversed between steps, and the numerically stable LSTM-style update
    ``x = sigma * u + (1 - sigma) * m`` with ``sigma = sigmoid(s)`` (section 4). That update is
    the affine transformer with a log-scale in ``(-inf, 0)``; here the log-scale is
    soft-bounded to ``(-scale_bound, scale_bound)`` instead, which starts at the identity.

    ``transformer="spline"`` replaces the affine update by a monotone rational-quadratic spline
    of ``bins`` bins on ``[-bound, bound]`` (identity outside; Durkan et al. 2019,
    https://arxiv.org/abs/1906.04032): still one pass per layer to sample, the density of an
    external point by the spline's analytic inverse in ``D`` sequential steps. It costs about
    3 to 4 affine updates per layer; on the 2-D distillation task (``docs/results.md``) it
    brings the student's test NLL to the teacher's (as does a deeper affine student).

    Arguments:
        features: data dimension.
        layers: number of IAF layers.
        hidden: MADE hidden sizes (one size when ``residual_blocks > 0``).
        activation: MADE activation.
        order: ``"alternate"`` (reversed between layers), ``"natural"`` or ``"random"``.
        residual_blocks: residual blocks in each MADE.
        scale_bound: bound on each log-scale; ``None``: :func:`depth_scale_bound`, 5 for
            shallow flows and less for deep ones, so the total stays within
            :data:`LOG_SCALE_BUDGET` nats per dimension (finite far from the data).
        context_features: size of the conditioning vector (0: unconditional).
        transformer: ``"affine"`` or ``"spline"`` (rational-quadratic).
        bins: spline bins ``K`` (``transformer="spline"``).
        bound: spline interval half-width ``B`` (``transformer="spline"``).
    """
    if transformer not in TRANSFORMERS:
        raise ValueError(
            f"'transformer' should be one of {list(TRANSFORMERS)}, got {transformer!r}"
        )
    log_scale_bound = depth_scale_bound(layers) if scale_bound is None else scale_bound

    def make() -> Transformer:
        if transformer == "spline":
            return RationalQuadraticSpline(bins, bound)
        return Affine(log_scale_bound)

    stack = autoregressive_stack(
        features,
        layers,
        make,
        hidden,
        order,
        residual_blocks,
        activation,
        False,
        context_features,
    )
    return Flow(Compose([Inverse(layer) for layer in stack]), StandardNormal(features))
