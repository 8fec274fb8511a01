"""Convolutional residual networks, RealNVP's conditioners for image couplings."""

from __future__ import annotations

from torch import Tensor, nn

from flowforge.nn.conv import ContextConvNet
from flowforge.nn.mlp import make_activation

__all__ = ["ConvResidualBlock", "ResNet"]


class ConvResidualBlock(nn.Module):
    """``x + conv(act(norm(conv(act(norm(x))))))`` with 3x3 same-padding convolutions.

    Arguments:
        channels: channels in and out.
        activation: name of the activation.
        batch_norm: normalise before each activation (RealNVP, section 3.7).
    """

    def __init__(self, channels: int, activation: str = "relu", batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            # in place unless it would overwrite x, which the skip connection still needs
            act = make_activation(activation, inplace=batch_norm or i > 0)
            layers += [act, nn.Conv2d(channels, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class ResNet(ContextConvNet):
    """RealNVP's conditioner: an input convolution, residual blocks, a zero-initialised output.

    (Dinh et al. 2016, https://arxiv.org/abs/1605.08803, section 4.1: 8 blocks of 64 feature
    maps for images below 64x64, batch normalisation; the paper also uses weight normalisation,
    left out here.)

    Arguments:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: feature maps of the residual blocks.
        blocks: number of residual blocks.
        activation: name of the activation.
        batch_norm: batch normalisation inside the blocks.
        context_features: channels of a context concatenated to the input (0: none), see
            :func:`flowforge.nn.conv.concat_context`.
        zero_init: zero the last convolution, so the network starts at output 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        blocks: int = 8,
        activation: str = "relu",
        batch_norm: bool = True,
        context_features: int = 0,
        zero_init: bool = True,
    ) -> None:
        if blocks < 0:
            raise ValueError(f"'blocks' should be >= 0, got {blocks}")
        super().__init__(in_channels, out_channels, hidden_channels, context_features, zero_init)
        self.build(
            *[ConvResidualBlock(hidden_channels, activation, batch_norm) for _ in range(blocks)],
            make_activation(activation, inplace=True),  # on a sum or convolution output
        )
