"""Conformance cases of the image-conditioned (c-Glow) layers and recipe, with image contexts.

A layer alone takes one feature map ``(B, F, H, W)`` at its input's size as its context; the
whole flow (``recipe/cglow_tiny``) takes the context image, which its conditioning network
encodes, so the ``gradients`` check also covers the encoder's parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowforge.models.cglow import cglow
from flowforge.nn.context_encoder import ContextEncoder, FeatureConvNet, FeatureZeroConv
from flowforge.testing.cases.images import images
from flowforge.testing.registry import Case, register
from flowforge.transforms import Affine, Compose, Coupling, half_mask
from flowforge.transforms.conditional import (
    ConditionalActNorm,
    ConditionalLULinear,
    ImageConditioned,
)
from flowforge.transforms.reshape import Squeeze, Unsqueeze


def pixels_with_image_context(
    shape: tuple[int, ...], context_shape: tuple[int, ...], levels: int = 256, batch: int = 3
) -> Callable[[], tuple[Tensor, Tensor]]:
    """Seeded integer pixels ``(batch, *shape)`` and a context image in ``[0, 1]``."""

    def inputs() -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(3)
        x = torch.randint(0, levels, (batch, *shape), generator=g).double()
        return x, torch.rand(batch, *context_shape, generator=g, dtype=torch.float64)

    return inputs


def _conditioned_step() -> ImageConditioned:
    # (2, 4, 4) -> squeeze (8, 2, 2): conditional actnorm, 1x1, coupling, split prior
    encoder = ContextEncoder(3, 4, scales=1)
    inner = Compose(
        [
            Squeeze(),
            ConditionalActNorm(8, 4),
            ConditionalLULinear(8, 4),
            Coupling(half_mask(8), lambda i, o: FeatureConvNet(i, o, 8, "tanh", 4), Affine()),
            Coupling(half_mask(8, first=False), lambda i, o: FeatureZeroConv(i, o, 4), Affine()),
            Unsqueeze(),
        ]
    )
    return ImageConditioned(encoder, inner, (3, 4, 4))


register(
    Case(
        "conditional/actnorm_features",
        lambda: ConditionalActNorm(4, 3),
        images((4, 2, 2), context=(3, 2, 2)),
    )
)
register(
    Case(
        "conditional/conv1x1_lu_features",
        lambda: ConditionalLULinear(4, 3),
        images((4, 2, 2), context=(3, 2, 2)),
    )
)
register(
    Case(
        "conditional/coupling_features",
        lambda: Coupling(half_mask(4), lambda i, o: FeatureConvNet(i, o, 8, "tanh", 3), Affine()),
        images((4, 2, 2), context=(3, 2, 2)),
    )
)
register(
    Case(
        "conditional/image_conditioned_step",
        _conditioned_step,
        images((2, 4, 4), context=(3, 4, 4)),
    )
)
register(
    Case(
        "recipe/cglow_tiny",
        lambda: cglow(
            (1, 4, 4),
            context_features=2,
            scales=2,
            depth=2,
            hidden_channels=8,
            feature_channels=4,
            dequantization="centre",
        ),
        pixels_with_image_context((1, 4, 4), (2, 4, 4)),
    )
)
