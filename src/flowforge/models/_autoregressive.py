"""Shared construction of stacks of masked autoregressive layers (MAF, IAF, NSF, SOS)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flowforge.transforms import BatchNorm, MaskedAutoregressive, Transform, Transformer

__all__ = ["autoregressive_stack", "layer_order"]

ORDERS = ("alternate", "natural", "random")


def layer_order(order: str, i: int) -> str:
    """The MADE order of layer ``i``: ``"alternate"`` reverses it between layers (MAF paper)."""
    if order not in ORDERS:
        raise ValueError(f"'order' should be one of {list(ORDERS)}, got {order!r}")
    if order == "alternate":
        return "natural" if i % 2 == 0 else "reversed"
    return order


def autoregressive_stack(
    features: int,
    layers: int,
    transformer: Callable[[], Transformer],
    hidden: Sequence[int],
    order: str,
    residual_blocks: int,
    activation: str,
    batch_norm: bool,
    context_features: int,
) -> list[Transform]:
    """``layers`` masked autoregressive layers, with optional batch norm between them."""
    if features < 1:
        raise ValueError(f"'features' should be positive, got {features}")
    if layers < 1:
        raise ValueError(f"'layers' should be positive, got {layers}")
    stack: list[Transform] = []
    for i in range(layers):
        if batch_norm and i > 0:
            stack.append(BatchNorm(features))
        stack.append(
            MaskedAutoregressive(
                features,
                transformer(),
                hidden,
                layer_order(order, i),
                residual_blocks,
                activation,
                context_features,
                seed=i,
            )
        )
    return stack
