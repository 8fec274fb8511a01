r"""c-Glow: a Glow conditioned on an image in every layer, for structured output.

Lu and Huang 2020, "Structured Output Learning with Conditional Generative Flows", AAAI,
https://arxiv.org/abs/1905.13288. The flow models :math:`p(y \mid x)` of an output image ``y``
(the event) given an input image ``x`` (the context), e.g. the whole image given its visible
part and the mask (inpainting) or a clean image given a noisy one (denoising).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.nn.context_encoder import ContextEncoder, FeatureConvNet, FeatureZeroConv
from flowforge.transforms import Additive, Affine, Compose, Coupling, Transform, half_mask
from flowforge.transforms.conditional import (
    ConditionalActNorm,
    ConditionalLULinear,
    ContextShapeError,
    ImageConditioned,
    check_context_image,
)
from flowforge.transforms.dequantization import make_dequantization
from flowforge.transforms.elementwise import Logit
from flowforge.transforms.prior import ContextAffine
from flowforge.transforms.reshape import MultiScale, check_multiscale_shape

__all__ = [
    "ContextShapeError",
    "ImageContextFlow",
    "cglow",
    "cglow_step",
    "posterior_mean",
    "psnr",
]


class ImageContextFlow(Flow):
    """A :class:`~flowforge.flows.Flow` whose context is an image ``(batch, *context_shape)``.

    The same methods as every flow; only the context checks differ: a missing context, one of
    another shape, or another batch size is a :class:`~flowforge.transforms.conditional.
    ContextShapeError` (a ``ValueError``) at the entry points. ``context_features`` is the
    context's channel count. For sampling, one context ``(C_c, H, W)`` is shared by the ``n``
    samples, or ``(n, C_c, H, W)`` gives one per sample.
    """

    def __init__(self, transform: ImageConditioned, base: StandardNormal) -> None:
        super().__init__(transform, base, context_features=transform.context_shape[0])
        self.context_shape = tuple(transform.context_shape)

    def check_context(self, context: Tensor | None) -> None:
        check_context_image(context, self.context_shape)
        self._check_placement("context", context)  # type: ignore[arg-type]

    def _check_input(self, x: Tensor, context: Tensor | None) -> None:
        shape = tuple(self.event_shape)
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"'x' should have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        self.check_context(context)
        check_context_image(context, self.context_shape, x.shape[0])
        self._check_placement("x", x)

    def _sample_context(self, n: int, context: Tensor | None) -> Tensor | None:
        if isinstance(n, bool) or not hasattr(n, "__index__") or n < 1:
            raise ValueError(f"'n' should be a positive int (number of samples), got {n!r}")
        if isinstance(context, Tensor) and tuple(context.shape) == self.context_shape:
            context = context.unsqueeze(0).expand(n, *self.context_shape)
        self.check_context(context)
        check_context_image(context, self.context_shape, n)
        return context

    def as_distribution(self, context: object = None, validate_args: bool | None = None) -> None:  # type: ignore[override]
        raise NotImplementedError(
            "as_distribution takes vector contexts; an image-conditioned flow has none: use "
            "log_prob and sample with context=(batch, C, H, W)"
        )


def cglow_step(channels: int, hidden_channels: int, features: int, coupling: str) -> Compose:
    """One c-Glow step: conditional actnorm, conditional 1x1 convolution (LU form, per-sample
    matrix) and a coupling whose network also sees the conditioning features."""
    transformers = {"affine": Affine, "additive": Additive}
    if coupling not in transformers:
        raise ValueError(f"'coupling' should be one of {sorted(transformers)}, got {coupling!r}")
    return Compose(
        [
            ConditionalActNorm(channels, features),
            ConditionalLULinear(channels, features),
            Coupling(
                half_mask(channels),
                lambda i, o: FeatureConvNet(i, o, hidden_channels, context_features=features),
                transformers[coupling](),
            ),
        ]
    )


def cglow(
    event_shape: Sequence[int],
    context_features: int = 1,
    scales: int = 2,
    depth: int = 8,
    hidden_channels: int = 128,
    feature_channels: int = 32,
    coupling: str = "affine",
    split_prior: bool = True,
    learn_top: bool = True,
    dequantization: str = "uniform",
    alpha: float | None = None,
    levels: int = 256,
) -> ImageContextFlow:
    r"""c-Glow with ``L = scales`` levels of ``K = depth`` conditional steps.

    The paper's defaults (Lu and Huang 2020, section 5; experiments on 64x64 images): L = 3
    levels, K = 8 steps per level, 3x3-1x1-3x3 coupling networks of 512 channels, affine
    coupling, conditioning networks of 3 convolutions (+ 2 fully connected layers for the
    actnorm and 1x1 parameters) per layer, Adam at lr 1e-4 (2e-4 for some tasks), batch 2-16.
    Here one shared :class:`~flowforge.nn.context_encoder.ContextEncoder` gives
    ``feature_channels`` maps per level and every layer has a small head on it; defaults are
    smaller for CPUs.
    Glow's split prior and learned top prior are kept (the split prior's network also sees
    the features; the top prior is not conditional).

    The context image has the event's height and width and ``context_features`` channels
    (e.g. 2 for inpainting: visible pixels and mask), which is all a run's spec needs to
    rebuild the model. The output image is raw pixel values, dequantized as in :func:`glow`.

    Arguments:
        event_shape: ``(C, H, W)`` of the output image, ``H, W`` divisible by ``2 ** scales``.
        context_features: channels of the context image.
        scales: number of levels ``L``.
        depth: steps per level ``K``.
        hidden_channels: width of the coupling networks.
        feature_channels: channels of the conditioning features at every level.
        coupling: ``"affine"`` or ``"additive"``.
        split_prior: learned (feature-conditioned) prior for each factored-out half.
        learn_top: learned diagonal Gaussian prior of the latent.
        dequantization: ``"uniform"`` or ``"centre"`` (variational dequantization would need
            the context too, and is not offered).
        alpha: if given, a logit with this ``alpha`` after dequantization.
        levels: number of discrete pixel values.
    """
    shape = tuple(int(s) for s in event_shape)
    check_multiscale_shape(shape, scales)
    if depth < 1:
        raise ValueError(f"'depth' should be positive, got {depth}")
    if context_features < 1:
        raise ValueError(
            "'context_features' (channels of the context image) should be >= 1, "
            f"got {context_features}"
        )
    if dequantization not in ("uniform", "centre"):
        raise ValueError(
            f"'dequantization' should be 'uniform' or 'centre', got {dequantization!r}"
        )
    c, f = shape[0], int(feature_channels)
    steps: list[Transform] = []
    priors: list[Transform] = []
    for s in range(scales):
        cs = 4 * c * 2**s  # channels after this level's squeeze
        steps.append(Compose([cglow_step(cs, hidden_channels, f, coupling) for _ in range(depth)]))
        if s < scales - 1:
            priors.append(
                Coupling(
                    half_mask(cs, first=False),
                    lambda i, o: FeatureZeroConv(i, o, f),
                    Affine(),
                )
            )
    layers: list[Transform] = [
        make_dequantization(dequantization, shape, levels),
        *([] if alpha is None else [Logit(alpha)]),
        MultiScale(steps, priors if split_prior else None, channels=c),
    ]
    if learn_top:
        layers.append(ContextAffine(shape))
    context_shape = (int(context_features), shape[1], shape[2])
    encoder = ContextEncoder(context_features, f, scales)
    transform = ImageConditioned(encoder, Compose(layers), context_shape)
    return ImageContextFlow(transform, StandardNormal(shape))


@torch.no_grad()
def posterior_mean(
    flow: ImageContextFlow, context: Tensor, samples: int = 8, temperature: float = 1.0
) -> Tensor:
    """The mean of ``samples`` draws of ``p(y | context)`` per context image: ``(n, *event)``,
    the estimate that minimises the expected squared error (e.g. a denoised image)."""
    flow.eval()
    return torch.stack([flow.sample(samples, c, temperature).mean(0) for c in context])


def psnr(estimate: Tensor, target: Tensor, levels: int = 256) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, ``10 log10(1 / MSE)`` on ``[0, 1]`` units of
    raw ``levels``-valued images ``(n, C, H, W)``."""
    mse = ((estimate - target) / (levels - 1)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))
