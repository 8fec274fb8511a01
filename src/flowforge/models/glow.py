"""Glow: actnorm, invertible 1x1 convolution and affine coupling, in a multi-scale flow.

Kingma and Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions",
https://arxiv.org/abs/1807.03039.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.nn.conv import ConvNet, ZeroConv
from flowforge.transforms import (
    Additive,
    Affine,
    Compose,
    Coupling,
    Logit,
    LULinear,
    Transform,
    half_mask,
)
from flowforge.transforms.conv1x1 import InvertibleConv1x1
from flowforge.transforms.dequantization import make_dequantization
from flowforge.transforms.normalization import ActNorm
from flowforge.transforms.prior import ContextAffine
from flowforge.transforms.reshape import MultiScale, check_multiscale_shape

__all__ = ["glow", "glow_step"]


def glow_step(
    channels: int,
    hidden_channels: int,
    coupling: str = "affine",
    conv: str = "lu",
    context_features: int = 0,
) -> Compose:
    """One step of flow: actnorm, invertible 1x1 convolution, coupling (Glow, figure 2a).

    The coupling's network (3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv) maps
    the first half of the channels, and the context if any, to the parameters of the second.
    """
    convs = {"lu": lambda: LULinear(channels), "plain": lambda: InvertibleConv1x1(channels)}
    if conv not in convs:
        raise ValueError(f"'conv' should be one of {sorted(convs)}, got {conv!r}")
    transformers = {"affine": Affine, "additive": Additive}
    if coupling not in transformers:
        raise ValueError(f"'coupling' should be one of {sorted(transformers)}, got {coupling!r}")
    return Compose(
        [
            ActNorm(channels),
            convs[conv](),
            Coupling(
                half_mask(channels),
                lambda i, o: ConvNet(i, o, hidden_channels, context_features=context_features),
                transformers[coupling](),
            ),
        ]
    )


def glow(
    event_shape: Sequence[int],
    scales: int = 2,
    depth: int = 8,
    hidden_channels: int = 128,
    coupling: str = "affine",
    conv: str = "lu",
    split_prior: bool = True,
    learn_top: bool = True,
    dequantization: str = "uniform",
    alpha: float | None = None,
    levels: int = 256,
    context_features: int = 0,
) -> Flow:
    r"""Glow with ``L = scales`` levels of ``K = depth`` steps.

    Paper defaults (CIFAR-10): L = 3, K = 32, 512 hidden channels, affine coupling, LU 1x1
    convolution, split with a learned prior, learned top prior; data ``x / 256 - 1/2`` after
    uniform dequantization. Here the data are dequantized to ``[0, 1)`` and the first actnorm
    centres them. Defaults are smaller for CPUs; 28x28 MNIST allows ``scales <= 2``.

    Class-conditional Glow (``context_features > 0``, one-hot labels): the top prior's mean
    and log-scale are linear in the label (:class:`~flowforge.transforms.prior.ContextAffine`,
    Glow section 5) and every coupling network also sees the label; sample a chosen class with
    ``flow.sample(n, context=one_hot, temperature=0.7)``.

    Arguments:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by ``2 ** scales``.
        scales: number of levels ``L``.
        depth: steps per level ``K``.
        hidden_channels: width of the coupling networks.
        coupling: ``"affine"`` or ``"additive"``.
        conv: ``"lu"`` (LU-decomposed) or ``"plain"`` 1x1 convolution.
        split_prior: learned prior for each factored-out half (else standard normal).
        learn_top: learned (and, with a context, class-conditional) prior of the latent.
        dequantization: ``"uniform"``, ``"variational"`` (Flow++) or ``"centre"``.
        alpha: if given, a logit with this ``alpha`` after dequantization (RealNVP's
            preprocessing; not in the Glow paper).
        levels: number of discrete pixel values.
        context_features: size of a conditioning vector (0: unconditional).
    """
    shape = tuple(event_shape)
    check_multiscale_shape(shape, scales)
    if depth < 1:
        raise ValueError(f"'depth' should be positive, got {depth}")
    c = shape[0]
    steps: list[Transform] = []
    priors: list[Transform] = []
    for s in range(scales):
        cs = 4 * c * 2**s  # channels after this level's squeeze
        steps.append(
            Compose(
                [
                    glow_step(cs, hidden_channels, coupling, conv, context_features)
                    for _ in range(depth)
                ]
            )
        )
        if s < scales - 1:
            priors.append(
                Coupling(
                    half_mask(cs, first=False),  # the kept (second) half conditions the first
                    lambda i, o: ZeroConv(i, o, context_features),
                    Affine(),
                )
            )
    layers: list[Transform] = [
        make_dequantization(
            dequantization,
            shape,
            levels,
            lambda i, o, k: ConvNet(i, o, hidden_channels, context_features=k),
        ),
        *([] if alpha is None else [Logit(alpha)]),
        MultiScale(steps, priors if split_prior else None, channels=c),
    ]
    if learn_top or context_features:
        layers.append(ContextAffine(shape, context_features))
    return Flow(Compose(layers), StandardNormal(shape))
