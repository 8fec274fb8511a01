"""NICE: additive coupling layers, a diagonal scaling and a logistic prior.

Dinh, Krueger and Bengio 2014, "NICE: Non-linear Independent Components Estimation",
https://arxiv.org/abs/1410.8516.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.distributions import StandardLogistic, StandardNormal
from flowforge.flows import Flow
from flowforge.nn.mlp import MLP
from flowforge.transforms import Additive, Compose, Coupling, DiagonalScaling, alternating_mask

__all__ = ["nice"]


def nice(
    features: int,
    couplings: int = 4,
    hidden: Sequence[int] = (1000,) * 5,
    activation: str = "relu",
    prior: str = "logistic",
    context_features: int = 0,
    data_init: bool = False,
) -> Flow:
    """Builds a NICE flow over vectors of ``features`` dimensions.

    Paper defaults (MNIST, section 5.1): 4 additive couplings whose roles alternate between the
    odd and even indices, each with a ReLU MLP of 5 hidden layers of 1000 units; a diagonal
    scaling ``exp(s)`` after the last coupling, the model's only volume change; a standard
    logistic prior. Adam, lr 1e-3, and 1500 epochs give 1980.50 nats (4.36 bits/dim) on MNIST.

    Arguments:
        features: data dimension (at least 2).
        couplings: number of additive couplings (the paper needs 3 or more for every dimension
            to influence every other; 4 in the paper, 6 in a common variant).
        hidden: hidden layer sizes of each coupling's MLP.
        activation: MLP activation.
        prior: ``"logistic"`` (paper) or ``"normal"``.
        context_features: size of a conditioning vector (0: unconditional).
        data_init: start the diagonal scaling from the first training batch (see
            :class:`~flowforge.transforms.DiagonalScaling`).
    """
    if features < 2:
        raise ValueError(f"'features' should be at least 2, got {features}")
    if couplings < 1:
        raise ValueError(f"'couplings' should be positive, got {couplings}")
    priors = {"logistic": StandardLogistic, "normal": StandardNormal}
    if prior not in priors:
        raise ValueError(f"'prior' should be one of {sorted(priors)}, got {prior!r}")
    layers = [
        Coupling(
            alternating_mask(features, parity=i % 2),
            lambda a, b: MLP(a, b, hidden, activation, context_features),
            Additive(),
        )
        for i in range(couplings)
    ]
    return Flow(Compose([*layers, DiagonalScaling(features, data_init)]), priors[prior](features))
