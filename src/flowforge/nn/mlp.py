"""Multi-layer perceptron conditioners, with optional context input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MLP", "make_activation"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """Builds an activation by name; the error lists the allowed names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"'activation' should be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """A fully connected network ``in -> hidden... -> out`` with one activation between layers.

    Arguments:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers, e.g. ``(64, 64)``.
        activation: name of the activation (see :data:`ACTIVATIONS`).
        context_features: size of a context vector concatenated to the input (0: none).
        zero_init: zero the last layer's weights and bias, so the network starts at output 0
            (which every flowforge transformer maps to the identity).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        context_features: int = 0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if value < 1:
                raise ValueError(f"'{name}' should be positive, got {value}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"'hidden' sizes should be positive, got {list(hidden)}")
        self.context_features = context_features
        sizes = [in_features + context_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            if i > 0:
                layers.append(make_activation(activation))
            layers.append(nn.Linear(a, b))
        self.net = nn.Sequential(*layers)
        if zero_init:
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(
                    f"this network expects a 'context' of {self.context_features} features"
                )
            x = torch.cat([x, context.expand(x.shape[0], -1)], dim=-1)
        return self.net(x)
