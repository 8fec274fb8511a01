"""FFJORD for vectors: continuous normalizing flows with Hutchinson's trace estimator.

Grathwohl, Chen, Bettencourt, Sutskever and Duvenaud 2019, "FFJORD: Free-form Continuous
Dynamics for Scalable Reversible Generative Models", https://arxiv.org/abs/1810.01367. The toy
model of the paper: one CNF whose dynamics are a concat-squash MLP of 3 x 64 tanh units,
dopri5 with tolerances 1e-5, a Gaussian Hutchinson probe in training and the exact trace in
evaluation. RNODE regularisation (Finlay et al. 2020, https://arxiv.org/abs/2002.02798) is off
by default.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.transforms import Compose, Transform
from flowforge.transforms.continuous import CNF, ConcatSquashMLP, ExactTrace, HutchinsonTrace

__all__ = ["ffjord"]


def ffjord(
    features: int,
    blocks: int = 1,
    hidden: Sequence[int] = (64, 64, 64),
    activation: str = "tanh",
    end_time: float = 0.5,
    method: str = "dopri5",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    step_size: float | None = None,
    adjoint: bool = False,
    noise: str = "gaussian",
    exact_train: bool = False,
    kinetic_energy: float = 0.0,
    jacobian_norm: float = 0.0,
    context_features: int = 0,
) -> Flow:
    """Builds an FFJORD flow over vectors of ``features`` dimensions.

    Arguments:
        features: data dimension.
        blocks: number of CNFs in sequence.
        hidden: hidden sizes of each dynamics network.
        activation: its activation.
        end_time: integration time ``T`` of each CNF (the toy experiments: 0.5).
        method, atol, rtol, step_size: the ODE solver (see :class:`CNF`).
        adjoint: adjoint gradients instead of back-propagation through the solver.
        noise: Hutchinson probe, ``"gaussian"`` or ``"rademacher"``.
        exact_train: the exact trace in training too (``features`` vector-Jacobian products
            per evaluation instead of one): no estimator variance, for 2-D and small tabular
            data (the FFJORD code's ``brute_force`` divergence).
        kinetic_energy, jacobian_norm: RNODE weights (add
            :func:`flowforge.transforms.continuous.regularization` to the loss).
        context_features: size of a conditioning vector (0: unconditional).
    """
    if features < 1:
        raise ValueError(f"'features' should be positive, got {features}")
    if blocks < 1:
        raise ValueError(f"'blocks' should be positive, got {blocks}")
    layers: list[Transform] = [
        CNF(
            ConcatSquashMLP(features, hidden, activation, context_features),
            end_time=end_time,
            method=method,
            atol=atol,
            rtol=rtol,
            step_size=step_size,
            adjoint=adjoint,
            estimator=ExactTrace() if exact_train else HutchinsonTrace(noise),
            kinetic_energy=kinetic_energy,
            jacobian_norm=jacobian_norm,
        )
        for _ in range(blocks)
    ]
    return Flow(Compose(layers), StandardNormal(features))
