"""i-ResNet for vectors: invertible residual blocks with the truncated power-series log-det.

Behrmann, Grathwohl, Chen, Duvenaud and Jacobsen 2019, "Invertible Residual Networks",
https://arxiv.org/abs/1811.00995. Blocks ``z = x + g(x)`` with ``g`` a spectrally normalised
ELU MLP (coefficient 0.9); training uses the log-det series truncated after 5 terms with one
Hutchinson probe (biased, differentiated through); evaluation uses the exact log-det in low
dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from flowforge.flows import Flow
from flowforge.models.resflow import residual_flow
from flowforge.transforms.logdet import PowerSeriesLogDet

__all__ = ["iresnet"]


def iresnet(
    features: int,
    blocks: int = 10,
    hidden: Sequence[int] = (128, 128, 128),
    coeff: float = 0.9,
    n_terms: int = 5,
    activation: str = "elu",
    exact_eval: bool | None = None,
    affine: bool = True,
    context_features: int = 0,
) -> Flow:
    """Builds an i-ResNet flow over vectors of ``features`` dimensions.

    Arguments:
        features: data dimension.
        blocks: number of residual blocks.
        hidden: hidden sizes of each block's MLP.
        coeff: spectral-norm bound of every linear layer (the paper: 0.9).
        n_terms: terms of the truncated log-det series (the paper: 5 to 10).
        activation: a 1-Lipschitz activation (the paper: ELU).
        exact_eval: exact log-det in eval mode (``None``: when ``features <= 32``).
        affine: an element-wise affine map after each block.
        context_features: size of a conditioning vector (0: unconditional).
    """
    if n_terms < 1:
        raise ValueError(f"'n_terms' should be positive, got {n_terms}")

    def estimator() -> nn.Module:
        return PowerSeriesLogDet(n_terms)

    return residual_flow(
        features, blocks, hidden, coeff, activation, estimator, exact_eval, affine, context_features
    )
