"""Multi-layer perceptron conditioners, with optional context input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowforge.nn.init import antisymmetric_start, unit_pairs

__all__ = ["ACTIVATIONS", "INPLACE_SAFE", "MLP", "make_activation"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


# activations whose backward needs only their output, so they may overwrite their input
INPLACE_SAFE = frozenset({"relu", "elu", "leaky_relu"})


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """Builds an activation by name; the error lists the allowed names.

    With ``inplace=True`` the activations of :data:`INPLACE_SAFE` overwrite their input (the
    others ignore it). Only for an input nothing else reads, such as a fresh linear or
    convolution output: it saves one activation-sized allocation per layer, which on CPU is
    mostly page faults (0.57x-0.62x of the ``log_prob`` time of MAF and RealNVP at batch 4096 in a
    fresh process, ``python benchmarks/ab_options.py``).
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"'activation' should be one of {sorted(ACTIVATIONS)}, got {name!r}")
    if inplace and name in INPLACE_SAFE:
        return ACTIVATIONS[name](inplace=True)
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """A fully connected network ``in -> hidden... -> out`` with one activation between layers.

    Arguments:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers, e.g. ``(64, 64)``.
        activation: name of the activation (see :data:`ACTIVATIONS`).
        context_features: size of a context vector concatenated to the input (0: none).
        zero_init: start at output 0 (which every flowforge transformer maps to the identity)
            with live gradients: the last hidden units in pairs of equal value, read with
            opposite weights (:func:`~flowforge.nn.init.antisymmetric_start`); without hidden
            layers, a zero last layer.
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
                layers.append(make_activation(activation, inplace=True))  # on a linear output
            layers.append(nn.Linear(a, b))
        self.net = nn.Sequential(*layers)
        if zero_init:
            last = self.net[-1]
            if hidden:
                antisymmetric_start(last, [self.net[-3]], unit_pairs(torch.zeros(hidden[-1])))
            else:
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
