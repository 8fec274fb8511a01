"""MAF: masked autoregressive flow, optionally with a MADE MoG base (MAF MoG).

Papamakarios, Pavlakou and Murray 2017, "Masked Autoregressive Flow for Density Estimation",
https://arxiv.org/abs/1705.07057.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flowforge.distributions import MADEMoG, base_distribution
from flowforge.flows import Flow
from flowforge.models._autoregressive import autoregressive_stack, layer_order
from flowforge.models.pixels import on_pixels
from flowforge.transforms import Affine, Compose, Transform, depth_scale_bound

__all__ = ["maf", "maf_image"]


def maf(
    features: int,
    layers: int = 5,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    order: str = "alternate",
    batch_norm: bool = True,
    base: str = "normal",
    components: int = 10,
    residual_blocks: int = 0,
    scale_bound: float | None = None,
    context_features: int = 0,
) -> Flow:
    """Builds a MAF over vectors of ``features`` dimensions.

    Each layer is ``z_i = (x_i - mu_i(x_<i)) exp(-alpha_i(x_<i))`` (here written as the affine
    transformer ``x exp(s) + t`` with a soft-bounded log-scale), its parameters from one MADE:
    the density costs one pass per layer, sampling one MADE sweep of ``D`` steps per layer.

    Paper defaults (section 4 and the authors' code, for POWER and GAS): 5 layers (10 in the
    larger variant), MADEs with 2 hidden layers of 100 ReLU units (512 for HEPMASS and
    MINIBOONE, 1024 for BSDS300; tanh on GAS), the order reversed between layers, batch norm
    between layers, and for MAF MoG a MADE MoG base with 10 components. Trained with Adam,
    lr 1e-4, batch 100, early stopping after 30 epochs without validation improvement.

    Arguments:
        features: data dimension.
        layers: number of autoregressive layers; 0 with ``base="mog"`` is the MADE MoG alone
            (the paper's "MADE MoG" rows: one MADE whose conditionals are mixtures).
        hidden: MADE hidden sizes (one size when ``residual_blocks > 0``).
        activation: MADE activation.
        order: ``"alternate"`` (natural, reversed, ...: the paper), ``"natural"`` or
            ``"random"`` (a different random order per layer).
        batch_norm: batch norm between layers.
        base: ``"normal"`` (MAF), ``"mog"`` (MAF MoG: a MADE MoG base) or ``"mixture"`` (a
            :class:`~flowforge.distributions.GaussianMixture` started from the data).
        components: mixture components of the MoG base (the most, for ``"mixture"``).
        residual_blocks: residual blocks in each MADE (0: plain masked MLP, as in the paper).
        scale_bound: bound on each log-scale; ``None``: :func:`depth_scale_bound`, 5 for
            shallow flows and less for deep ones, so the total stays within
            :data:`LOG_SCALE_BUDGET` nats per dimension (finite far from the data).
        context_features: size of the conditioning vector (0: unconditional).
    """
    if base not in ("normal", "mog", "mixture"):
        raise ValueError(f"'base' should be one of ['normal', 'mog', 'mixture'], got {base!r}")
    if layers < 0 or (layers == 0 and base == "normal"):
        raise ValueError(
            f"'layers' should be positive (or 0 with base 'mog' or 'mixture'), got {layers}"
        )
    stack: list[Transform] = []
    if layers:
        bound = depth_scale_bound(layers) if scale_bound is None else scale_bound
        stack = autoregressive_stack(
            features,
            layers,
            lambda: Affine(bound),
            hidden,
            order,
            residual_blocks,
            activation,
            batch_norm,
            context_features,
        )
    prior = base_distribution("normal" if base == "mog" else base, features, components)
    if base == "mog":
        mog_order = "random" if order == "random" else layer_order(order, layers)
        prior = MADEMoG(features, components, hidden, activation, mog_order, context_features)
    return Flow(Compose(stack), prior)


def maf_image(
    event_shape: Sequence[int],
    layers: int = 5,
    hidden: Sequence[int] = (1024, 1024),
    activation: str = "relu",
    order: str = "alternate",
    batch_norm: bool = True,
    base: str = "normal",
    components: int = 10,
    scale_bound: float | None = None,
    alpha: float = 1e-6,
    dequantization: str = "uniform",
    levels: int = 256,
    context_features: int = 0,
) -> Flow:
    """MAF (or MADE MoG, MAF MoG) on ``(C, H, W)`` images, as in the paper's MNIST experiments
    (section 4.3): uniform dequantization, logit with ``alpha = 1e-6``, and the vector MAF over
    the ``D`` flattened pixels (:func:`flowforge.models.pixels.on_pixels`).

    Defaults are the authors' MNIST code (``run_experiments.py``): MADEs of 2 hidden layers of
    1024 ReLU units, sequential degrees and order, reversed between layers, batch norm between
    layers; ``layers: 5`` is MAF (5), ``layers: 10`` MAF (10), ``base: mog`` with ``layers: 5``
    MAF MoG (5) and with ``layers: 0`` MADE MoG (10 components).

    Arguments:
        event_shape: ``(C, H, W)``.
        layers, hidden, activation, order, batch_norm, base, components, scale_bound: as in
            :func:`maf`.
        alpha: the logit's ``alpha``.
        dequantization: ``"uniform"`` (the paper), ``"variational"`` or ``"centre"`` (see
            :func:`~flowforge.transforms.dequantization.make_dequantization`).
        levels: number of discrete pixel values.
        context_features: size of a conditioning vector (0: unconditional).
    """
    d = math.prod(event_shape)
    flow = maf(
        d,
        layers,
        hidden,
        activation,
        order,
        batch_norm,
        base,
        components,
        scale_bound=scale_bound,
        context_features=context_features,
    )
    return on_pixels(flow, event_shape, alpha, dequantization, levels)
