"""Convolutional conditioners for image couplings, with an optional context.

A context is either a vector ``(B, K)``, broadcast over the pixels (class labels), or an image
``(B, K, H, W)`` of the same size (the data, for variational dequantization); either way it is
concatenated to the input channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowforge.nn.mlp import make_activation

__all__ = ["ContextConvNet", "ConvNet", "ZeroConv", "concat_context", "zero_conv"]


def concat_context(x: Tensor, context: Tensor | None, features: int) -> Tensor:
    """Concatenates ``context`` (``(B, K)`` or ``(B, K, H, W)``) to ``x`` ``(B, C, H, W)``
    along the channels: ``(B, C + K, H, W)``; returns ``x`` when ``features == 0``."""
    if not features:
        return x
    if context is None:
        raise ValueError(f"this network expects a 'context' of {features} features")
    if context.dim() == 2:
        context = context[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, K, H, W)
    if context.shape[1] != features or context.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"'context' should have {features} features and the input's spatial size "
            f"{tuple(x.shape[2:])}, got shape {tuple(context.shape)}"
        )
    return torch.cat([x, context.expand(x.shape[0], -1, -1, -1)], dim=1)


def zero_conv(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Conv2d:
    """A same-padding convolution with zero weights and bias: the network starts at output 0."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ContextConvNet(nn.Module):
    """Base of the image conditioners: ``input 3x3 conv -> hidden layers -> output 3x3 conv``.

    Validates the sizes, concatenates the context to the input channels
    (:func:`concat_context`) and zero-initialises the output convolution on request, so a
    subclass only names its hidden layers (:meth:`build`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        context_features: int = 0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("hidden_channels", hidden_channels),
        ):
            if v < 1:
                raise ValueError(f"'{name}' should be positive, got {v}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        self.context_features = context_features
        self._sizes = (in_channels + context_features, hidden_channels, out_channels, zero_init)

    def build(self, *hidden_layers: nn.Module) -> None:
        """Sets ``self.net`` to the input convolution, ``hidden_layers`` and the output one."""
        c_in, hidden, c_out, zero_init = self._sizes
        last = zero_conv(hidden, c_out) if zero_init else nn.Conv2d(hidden, c_out, 3, padding=1)
        self.net = nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), *hidden_layers, last)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(B, C_in, H, W)`` and context -> ``(B, C_out, H, W)``."""
        return self.net(concat_context(x, context, self.context_features))


class ConvNet(ContextConvNet):
    """Glow's coupling network: 3x3 conv, activation, 1x1 conv, activation, 3x3 conv.

    (Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039, section 3.3: 512 hidden
    channels, last convolution zero-initialised so each coupling starts as the identity.)

    Arguments:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: width of the two hidden layers.
        activation: name of the activation (see :data:`flowforge.nn.mlp.ACTIVATIONS`).
        context_features: channels of a context concatenated to the input (0: none).
        zero_init: zero the last convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 512,
        activation: str = "relu",
        context_features: int = 0,
        zero_init: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, hidden_channels, context_features, zero_init)
        self.build(
            make_activation(activation, inplace=True),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
            make_activation(activation, inplace=True),
        )


class ZeroConv(nn.Module):
    """One zero-initialised 3x3 convolution with an optional context: Glow's ``ZeroConv2d``,
    the network of its split prior (``split2d_prior``).

    Arguments:
        in_channels: input channels.
        out_channels: output channels.
        context_features: channels of a context concatenated to the input (0: none).
    """

    def __init__(self, in_channels: int, out_channels: int, context_features: int = 0) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"'in_channels' and 'out_channels' should be positive, got {in_channels}, "
                f"{out_channels}"
            )
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        self.context_features = context_features
        self.conv = zero_conv(in_channels + context_features, out_channels)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(B, C_in, H, W)`` and context -> ``(B, C_out, H, W)``."""
        return self.conv(concat_context(x, context, self.context_features))
