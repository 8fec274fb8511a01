"""RealNVP on images: the classic flattened-MNIST demo and the multi-scale architecture.

Dinh, Sohl-Dickstein and Bengio 2016, "Density estimation using Real NVP",
https://arxiv.org/abs/1605.08803.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.models.pixels import on_pixels
from flowforge.models.realnvp import realnvp
from flowforge.nn.conv import ConvNet
from flowforge.nn.resnet import ResNet
from flowforge.transforms import (
    Affine,
    BatchNorm,
    Compose,
    Coupling,
    Logit,
    Transform,
    half_mask,
)
from flowforge.transforms.coupling import MaskedCoupling, checkerboard_mask
from flowforge.transforms.dequantization import make_dequantization
from flowforge.transforms.reshape import MultiScale, check_multiscale_shape

__all__ = ["realnvp_image", "realnvp_multiscale"]


def realnvp_image(
    event_shape: Sequence[int],
    couplings: int = 5,
    hidden: Sequence[int] = (1024,),
    activation: str = "relu",
    batch_norm: bool = True,
    alpha: float = 1e-6,
    dequantization: str = "uniform",
    levels: int = 256,
    context_features: int = 0,
) -> Flow:
    """RealNVP on flattened images: the classic MNIST demo (and the MAF paper's baseline).

    Defaults: uniform dequantization, logit with ``alpha = 1e-6`` (MAF's MNIST preprocessing),
    5 affine couplings over the alternating pixels with one hidden layer of 1024 ReLU units
    and batch norm between them. Trained on all digits or on one class (``data.classes: [2]``).

    Arguments:
        event_shape: ``(C, H, W)``.
        couplings, hidden, activation, batch_norm: as in :func:`flowforge.models.realnvp`.
        alpha: the logit's ``alpha``.
        dequantization: ``"uniform"``, ``"variational"`` or ``"centre"`` (see
            :func:`~flowforge.transforms.dequantization.make_dequantization`).
        levels: number of discrete pixel values.
        context_features: size of a conditioning vector (0: unconditional).
    """
    d = math.prod(event_shape)
    flow = realnvp(
        d,
        couplings,
        hidden,
        activation,
        "alternating",
        batch_norm,
        context_features=context_features,
    )
    return on_pixels(flow, event_shape, alpha, dequantization, levels)


def realnvp_multiscale(
    event_shape: Sequence[int],
    scales: int = 2,
    hidden_channels: int = 32,
    blocks: int = 2,
    checkerboard: int = 3,
    channelwise: int = 3,
    final_checkerboard: int = 4,
    batch_norm: bool = True,
    alpha: float = 0.05,
    dequantization: str = "uniform",
    levels: int = 256,
    context_features: int = 0,
) -> Flow:
    r"""Multi-scale RealNVP (section 3.6): per scale, checkerboard couplings, squeeze, channel
    couplings, factor out half the channels; the last scale has checkerboard couplings only.

    Paper defaults for images below 64x64 (CIFAR-10): 3 checkerboard and 3 channel-wise affine
    couplings per scale, 4 checkerboard couplings at the last scale, ResNet conditioners of 8
    blocks x 64 feature maps with batch norm, batch norm on the coupling outputs, logit with
    ``alpha = 0.05``. Defaults here are smaller (2 blocks x 32), for CPUs. For 28x28 MNIST,
    ``scales <= 2``.

    Arguments:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by ``2 ** scales``.
        scales: number of scales ``L``.
        hidden_channels, blocks: width and depth of each ResNet conditioner.
        checkerboard, channelwise, final_checkerboard: couplings per scale.
        batch_norm: batch norm in the conditioners and after each coupling.
        alpha: the logit's ``alpha``.
        dequantization: ``"uniform"``, ``"variational"`` (Flow++) or ``"centre"``.
        levels: number of discrete pixel values.
        context_features: size of a conditioning vector (0: unconditional).
    """
    shape = tuple(event_shape)
    check_multiscale_shape(shape, scales)
    for name, v in (("checkerboard", checkerboard), ("channelwise", channelwise)):
        if v < 1:
            raise ValueError(f"'{name}' should be positive, got {v}")

    def resnet(i: int, o: int) -> ResNet:
        return ResNet(i, o, hidden_channels, blocks, "relu", batch_norm, context_features)

    def stack(layers: list[Transform], channels: int) -> Compose:
        if batch_norm:
            layers = [t for layer in layers for t in (layer, BatchNorm(channels))]
        return Compose(layers)

    c, h, w = shape
    heads, steps = [], []
    for s in range(scales):
        cs, hs, ws = c * 2**s, h // 2**s, w // 2**s  # (C_s, H_s, W_s) at scale s
        n_checker = final_checkerboard if s == scales - 1 else checkerboard
        heads.append(
            stack(
                [
                    MaskedCoupling(checkerboard_mask((cs, hs, ws), k % 2), resnet, Affine())
                    for k in range(n_checker)
                ],
                cs,
            )
        )
        if s == scales - 1:
            steps.append(Compose([]))
        else:
            steps.append(
                stack(
                    [
                        Coupling(half_mask(4 * cs, first=k % 2 == 0), resnet, Affine())
                        for k in range(channelwise)
                    ],
                    4 * cs,
                )
            )
    dequant = make_dequantization(
        dequantization,
        shape,
        levels,
        lambda i, o, k: ConvNet(i, o, hidden_channels, context_features=k),
    )
    body = MultiScale(steps, heads=heads, channels=c)
    return Flow(Compose([dequant, Logit(alpha), body]), StandardNormal(shape))
