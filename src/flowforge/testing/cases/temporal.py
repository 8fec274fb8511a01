"""Conformance cases of the sequence transforms (:mod:`flowforge.transforms.temporal`) and the
VideoFlow recipe, on short sequences of small frames ``(batch, T, *frame)``."""

from __future__ import annotations

from flowforge.models.glow import glow_step
from flowforge.models.videoflow import videoflow
from flowforge.nn.conv import ConvNet
from flowforge.nn.mlp import MLP
from flowforge.testing.cases.images import images, pixels
from flowforge.testing.registry import Case, register
from flowforge.transforms import Affine, Coupling, FrameWise, TemporalAffine, half_mask

register(
    Case("temporal/framewise_glow_step", lambda: FrameWise(glow_step(4, 8)), images((3, 4, 2, 2)))
)
register(
    Case(
        "temporal/framewise_context",
        lambda: FrameWise(
            Coupling(half_mask(2), lambda i, o: ConvNet(i, o, 8, "tanh", 3), Affine())
        ),
        images((3, 2, 2, 2), context=3),
    )
)
register(
    Case(
        "temporal/affine_image",
        lambda: TemporalAffine((2, 2, 2), lambda i, o: ConvNet(i, o, 8, "tanh"), past=1),
        images((3, 2, 2, 2)),
    )
)
register(
    Case(
        "temporal/affine_image_context_past3",
        lambda: TemporalAffine((1, 2, 2), lambda i, o: ConvNet(i, o, 8, "tanh", 2), past=3),
        images((5, 1, 2, 2), context=2),
    )
)
register(
    Case(
        "temporal/affine_vector",
        lambda: TemporalAffine((3,), lambda i, o: MLP(i, o, (16,), "tanh"), past=2),
        images((4, 3), batch=4),
    )
)
register(
    Case(
        "recipe/videoflow_tiny",
        lambda: videoflow(
            (3, 1, 4, 4),
            scales=2,
            depth=1,
            hidden_channels=8,
            prior_hidden=8,
            prior_squeeze=1,
            dequantization="centre",
        ),
        pixels((3, 1, 4, 4)),
    )
)
