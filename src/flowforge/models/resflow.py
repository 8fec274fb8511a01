"""Residual Flows for vectors: invertible residual blocks with the unbiased log-determinant.

Chen, Behrmann, Duvenaud and Jacobsen 2019, "Residual Flows for Invertible Generative
Modeling", https://arxiv.org/abs/1906.02735. Each block is ``z = x + g(x)`` with ``g`` a
spectrally normalised LipSwish MLP (coefficient 0.98), followed by a learned element-wise
affine map (the paper's ActNorm, without data-dependent initialisation). Training uses the
Russian-roulette log-det (2 exact terms, then geometric(0.5)) with the Neumann-series gradient
computed backward-in-forward; evaluation uses the exact log-det in low dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.transforms import Compose, ElementwiseAffine, Transform
from flowforge.transforms.logdet import (
    BackwardInForward,
    ExactLogDet,
    NeumannLogDet,
    RouletteLogDet,
)
from flowforge.transforms.residual import LipschitzMLP, ResidualBlock

__all__ = ["residual_flow", "resflow"]

EXACT_EVAL_MAX_FEATURES = 32


def residual_flow(
    features: int,
    blocks: int,
    hidden: Sequence[int],
    coeff: float,
    activation: str,
    estimator: Callable[[], nn.Module],
    exact_eval: bool | None,
    affine: bool,
    context_features: int,
    input_scale: float | None = None,
) -> Flow:
    """Stacks ``blocks`` residual blocks (each optionally followed by an element-wise affine
    map) over a standard normal; the shared builder of :func:`resflow` and ``iresnet``.

    ``exact_eval=None`` evaluates the exact log-det when ``features <= 32`` and the unbiased
    estimator with 20 exact terms otherwise (the paper's evaluation). ``input_scale`` puts a
    learned element-wise affine map in front of the first block, initialised to multiply the
    data by ``input_scale`` (see :func:`resflow`).
    """
    if features < 1:
        raise ValueError(f"'features' should be positive, got {features}")
    if blocks < 1:
        raise ValueError(f"'blocks' should be positive, got {blocks}")
    if exact_eval is None:
        exact_eval = features <= EXACT_EVAL_MAX_FEATURES
    if input_scale is not None and not 0 < input_scale < math.inf:
        raise ValueError(f"'input_scale' should be positive and finite, got {input_scale}")
    layers: list[Transform] = []
    if input_scale is not None:
        scale = ElementwiseAffine(features)
        with torch.no_grad():
            scale.log_scale.fill_(math.log(input_scale))
        layers.append(scale)
    for _ in range(blocks):
        g = LipschitzMLP(features, hidden, coeff, activation, context_features)
        evaluator = ExactLogDet() if exact_eval else RouletteLogDet(n_exact_terms=20)
        layers.append(ResidualBlock(g, estimator(), evaluator))
        if affine:
            layers.append(ElementwiseAffine(features))
    return Flow(Compose(layers), StandardNormal(features))


def resflow(
    features: int,
    blocks: int = 10,
    hidden: Sequence[int] = (128, 128, 128),
    coeff: float = 0.98,
    activation: str = "lipswish",
    n_exact_terms: int = 2,
    p: float = 0.5,
    backward_in_forward: bool = True,
    exact_eval: bool | None = None,
    exact_train: bool = False,
    affine: bool = True,
    context_features: int = 0,
    input_scale: float | None = None,
) -> Flow:
    """Builds a Residual Flow over vectors of ``features`` dimensions.

    Defaults follow the paper's toy model scaled down for CPUs (it uses 100 blocks of 4 x 128
    units): 10 blocks of LipSwish MLPs with 3 x 128 hidden units, coefficient 0.98.

    Arguments:
        features: data dimension.
        blocks: number of residual blocks.
        hidden: hidden sizes of each block's MLP.
        coeff: spectral-norm bound of every linear layer (< 1).
        activation: a 1-Lipschitz activation: ``"lipswish"`` (the paper) or ``"elu"``, which
            trains much faster on CPU budgets (``docs/residual-and-continuous.md``).
        n_exact_terms, p: the roulette: terms always computed, geometric parameter.
        backward_in_forward: take the log-det gradients during the forward pass (memory).
        exact_eval: exact log-det in eval mode (``None``: when ``features <= 32``).
        exact_train: train with the exact log-det instead of the roulette (at most 32
            features: ``D`` backward passes per block). No estimator variance, for the 2-D and
            small tabular sets where the exact Jacobian is cheap.
        affine: an element-wise affine map after each block.
        context_features: size of a conditioning vector (0: unconditional).
        input_scale: put a learned element-wise affine map in front of the first block,
            initialised to multiply the data by this factor (``None``: no such map). Each
            layer's spectral norm bounds how fast a block's Jacobian can change per unit of
            distance, so a density with sharp edges (the checkerboard's squares) is easier to
            fit once the data are spread out; the map's log-det is counted, so likelihoods stay
            in the data's units.
    """
    if exact_train and features > EXACT_EVAL_MAX_FEATURES:
        raise ValueError(
            f"'exact_train' needs features <= {EXACT_EVAL_MAX_FEATURES}, got {features}"
        )

    def estimator() -> nn.Module:
        if exact_train:
            return ExactLogDet()
        neumann = NeumannLogDet(n_exact_terms, p)
        return BackwardInForward(neumann) if backward_in_forward else neumann

    return residual_flow(
        features,
        blocks,
        hidden,
        coeff,
        activation,
        estimator,
        exact_eval,
        affine,
        context_features,
        input_scale,
    )
