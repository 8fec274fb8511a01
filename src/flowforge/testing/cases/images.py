"""Conformance cases of the image transforms and recipes, on small images (1x4x4, 2x4x4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowforge.models.glow import glow
from flowforge.models.maf import maf_image
from flowforge.models.nice_image import nice_image
from flowforge.models.realnvp_image import realnvp_image, realnvp_multiscale
from flowforge.nn.conv import ConvNet, ZeroConv
from flowforge.nn.resnet import ResNet
from flowforge.testing.registry import Case, register
from flowforge.transforms import (
    Additive,
    Affine,
    Compose,
    Coupling,
    ElementwiseAffine,
    Logit,
    LULinear,
    half_mask,
)
from flowforge.transforms.conv1x1 import InvertibleConv1x1
from flowforge.transforms.coupling import MaskedCoupling, checkerboard_mask
from flowforge.transforms.dequantization import UniformDequantization
from flowforge.transforms.normalization import ActNorm
from flowforge.transforms.prior import ContextAffine
from flowforge.transforms.reshape import FactorOut, Flatten, MultiScale, Squeeze, Unsqueeze

Inputs = Callable[[], tuple[Tensor, Tensor | None]]


def images(
    shape: tuple[int, ...], batch: int = 3, context: int | tuple[int, ...] = 0, seed: int = 0
) -> Inputs:
    """Seeded standard-normal images ``(batch, *shape)`` and an optional vector or image context."""

    def inputs() -> tuple[Tensor, Tensor | None]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
        c = None
        if context:
            cshape = (context,) if isinstance(context, int) else context
            c = torch.randn(batch, *cshape, generator=g, dtype=torch.float64)
        return x, c

    return inputs


def pixels(shape: tuple[int, ...], levels: int = 256, batch: int = 3, context: int = 0) -> Inputs:
    """Seeded integer pixel values in ``[0, levels - 1]`` (as float64) and an optional context."""

    def inputs() -> tuple[Tensor, Tensor | None]:
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, levels, (batch, *shape), generator=g).double()
        c = torch.randn(batch, context, generator=g, dtype=torch.float64) if context else None
        return x, c

    return inputs


def unit_images(shape: tuple[int, ...], batch: int = 3) -> Inputs:
    def inputs() -> tuple[Tensor, None]:
        g = torch.Generator().manual_seed(2)
        return torch.rand(batch, *shape, generator=g, dtype=torch.float64) * 0.98 + 0.01, None

    return inputs


def conv(context: int = 0) -> Callable[[int, int], ConvNet]:
    return lambda i, o: ConvNet(i, o, 8, "tanh", context)


def resnet(i: int, o: int) -> ResNet:
    return ResNet(i, o, 8, blocks=1, activation="tanh")


def _tiny_multiscale() -> MultiScale:
    # (1, 4, 4): head, squeeze -> (4, 2, 2), step, prior, factor out 2 channels;
    # kept (2, 2, 2): head, squeeze -> (8, 1, 1), step, unsqueeze; unsqueeze -> (1, 4, 4)
    return MultiScale(
        levels=[
            Coupling(half_mask(4), conv(), Affine()),
            Compose([ActNorm(8), Coupling(half_mask(8), conv(), Affine())]),
        ],
        priors=[Coupling(half_mask(4, first=False), lambda i, o: ZeroConv(i, o), Affine())],
        heads=[
            MaskedCoupling(checkerboard_mask((1, 4, 4)), conv(), Affine()),
            MaskedCoupling(checkerboard_mask((2, 2, 2), 1), conv(), Affine()),
        ],
        channels=1,
    )


register(Case("reshape/squeeze", lambda: Squeeze(), images((1, 4, 4))))
register(Case("reshape/unsqueeze", lambda: Unsqueeze(), images((4, 2, 2))))
register(Case("reshape/flatten", lambda: Flatten((2, 4, 4)), images((2, 4, 4))))
register(
    Case(
        "reshape/factor_out",
        lambda: FactorOut(Compose([ElementwiseAffine(2), LULinear(2)]), factored=2),
        images((4, 2, 2)),
    )
)
register(Case("reshape/multiscale", _tiny_multiscale, images((1, 4, 4))))
register(
    Case(
        "coupling/checkerboard_affine",
        lambda: MaskedCoupling(checkerboard_mask((2, 4, 4)), conv(), Affine()),
        images((2, 4, 4)),
    )
)
register(
    Case(
        "coupling/checkerboard_additive_resnet",
        lambda: MaskedCoupling(checkerboard_mask((1, 4, 4), parity=1), resnet, Additive()),
        images((1, 4, 4)),
    )
)
register(
    Case(
        "coupling/checkerboard_image_context",
        lambda: MaskedCoupling(checkerboard_mask((1, 4, 4)), conv(context=1), Affine()),
        images((1, 4, 4), context=(1, 4, 4)),
    )
)
register(
    Case(
        "coupling/channel_affine_conv",
        lambda: Coupling(half_mask(2), conv(), Affine()),
        images((2, 4, 4)),
    )
)
register(
    Case(
        "coupling/channel_additive_resnet_context",
        lambda: Coupling(
            half_mask(4, first=False), lambda i, o: ConvNet(i, o, 8, "tanh", 3), Additive()
        ),
        images((4, 2, 2), context=3),
    )
)
register(Case("normalization/actnorm_image", lambda: ActNorm(2), images((2, 4, 4))))
register(Case("normalization/actnorm_vector", lambda: ActNorm(5), images((5,), batch=4)))
register(Case("linear/conv1x1_plain_image", lambda: InvertibleConv1x1(2), images((2, 4, 4))))
register(Case("linear/conv1x1_plain_vector", lambda: InvertibleConv1x1(4), images((4,))))
register(Case("linear/conv1x1_lu_image", lambda: LULinear(4), images((4, 2, 2))))
register(
    Case(
        "dequantization/uniform_bin_centre",
        lambda: UniformDequantization(noise=False),
        pixels((1, 4, 4)),
    )
)
register(
    Case(
        "dequantization/uniform_bin_centre_17_levels",
        lambda: UniformDequantization(levels=17, noise=False),
        pixels((2, 4, 4), levels=17),
    )
)
register(Case("elementwise/logit_image", lambda: Logit(alpha=0.05), unit_images((1, 4, 4))))
register(Case("prior/context_affine", lambda: ContextAffine((2, 4, 4)), images((2, 4, 4))))
register(
    Case(
        "prior/context_affine_class",
        lambda: ContextAffine((1, 4, 4), context_features=3),
        images((1, 4, 4), context=3),
    )
)
register(
    Case(
        "recipe/glow_tiny",
        lambda: glow((1, 4, 4), scales=2, depth=2, hidden_channels=8, dequantization="centre"),
        pixels((1, 4, 4)),
    )
)
register(
    Case(
        "recipe/glow_tiny_additive_plain_class",
        lambda: glow(
            (2, 4, 4),
            scales=1,
            depth=2,
            hidden_channels=8,
            coupling="additive",
            conv="plain",
            dequantization="centre",
            context_features=3,
        ),
        pixels((2, 4, 4), context=3),
    )
)
register(
    Case(
        "recipe/realnvp_multiscale_tiny",
        lambda: realnvp_multiscale(
            (1, 4, 4),
            hidden_channels=8,
            blocks=1,
            checkerboard=2,
            channelwise=2,
            final_checkerboard=2,
            dequantization="centre",
        ),
        pixels((1, 4, 4)),
    )
)
register(
    Case(
        "recipe/realnvp_image_tiny",
        lambda: realnvp_image((1, 4, 4), couplings=3, hidden=(16,), dequantization="centre"),
        pixels((1, 4, 4)),
    )
)
register(
    Case(
        "recipe/maf_image_tiny",
        lambda: maf_image((1, 4, 4), layers=2, hidden=(16,), dequantization="centre"),
        pixels((1, 4, 4)),
    )
)
register(
    Case(
        "recipe/nice_image_tiny",
        # data_init off: from 3 images some pixels have spread ~0, so the scale would be ~1e6
        # and the round trip ill-conditioned; elementwise/diagonal_scaling_data_init covers it
        lambda: nice_image(
            (1, 4, 4), couplings=4, hidden=(16,), dequantization="centre", data_init=False
        ),
        pixels((1, 4, 4)),
    )
)
