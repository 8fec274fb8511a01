"""Conformance cases of invertible residual blocks and the i-ResNet and Residual Flow recipes.

In eval mode (where the kit compares log-dets) every block uses the exact log-det, so the
comparison with the autograd Jacobian is exact; the fixed-point inverse runs to
``atol=1e-8, rtol=1e-6``, well inside the kit's default tolerances.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowforge.models import iresnet, resflow
from flowforge.testing.registry import Case, register, vector_inputs
from flowforge.transforms.logdet import BackwardInForward, NeumannLogDet, PowerSeriesLogDet
from flowforge.transforms.residual import LipschitzConvNet, LipschitzMLP, ResidualBlock


def _image_inputs() -> tuple[Tensor, None]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64), None


register(
    Case(
        "residual/mlp_neumann",
        lambda: ResidualBlock(LipschitzMLP(3, (16, 16), coeff=0.9)),
        vector_inputs(3),
    )
)
register(
    Case(
        "residual/mlp_power_series_elu",
        lambda: ResidualBlock(
            LipschitzMLP(3, (16,), coeff=0.9, activation="elu"), PowerSeriesLogDet(n_terms=3)
        ),
        vector_inputs(3),
    )
)
register(
    Case(
        "residual/mlp_context_backward_in_forward",
        lambda: ResidualBlock(
            LipschitzMLP(3, (16, 16), coeff=0.98, context_features=2),
            BackwardInForward(NeumannLogDet()),
        ),
        vector_inputs(3, context=2),
    )
)
register(
    Case(
        "residual/conv",
        lambda: ResidualBlock(LipschitzConvNet(2, 4, (2, 2), coeff=0.9)),
        _image_inputs,
    )
)
register(Case("recipe/resflow_2d", lambda: resflow(2, blocks=2, hidden=(8, 8)), vector_inputs(2)))
register(
    Case(
        "recipe/resflow_exact_train_2d",
        lambda: resflow(2, blocks=2, hidden=(8, 8), exact_train=True),
        vector_inputs(2),
    )
)
register(
    Case(
        "recipe/resflow_input_scale_2d",
        lambda: resflow(2, blocks=2, hidden=(8, 8), exact_train=True, input_scale=3.0),
        vector_inputs(2),
    )
)
register(Case("recipe/iresnet_2d", lambda: iresnet(2, blocks=2, hidden=(8, 8)), vector_inputs(2)))
register(
    Case(
        "recipe/resflow_context",
        lambda: resflow(3, blocks=2, hidden=(16,), context_features=2),
        vector_inputs(3, context=2),
    )
)
