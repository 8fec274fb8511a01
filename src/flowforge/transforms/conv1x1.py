r"""Glow's invertible 1x1 convolution in its plain form: a full learned ``C x C`` matrix applied
to the channels of every pixel (Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039).

Its LU form, with an O(C) log-determinant, is :class:`~flowforge.transforms.linear.LULinear`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowforge.transforms.base import Transform
from flowforge.transforms.linear import apply_channels

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(Transform):
    r"""A plain invertible linear map of dimension 1: Glow's 1x1 convolution without LU.

    .. math:: z = W x, \qquad \log|\det J| = n_{pos} \log|\det W|

    ``W`` is a full learned ``C x C`` matrix, initialised to a random rotation (Kingma and
    Dhariwal 2018, https://arxiv.org/abs/1807.03039, section 3.2). The log-determinant costs
    O(C^3) per call and the inverse a linear solve; :class:`LULinear` is the O(C) variant.

    Arguments:
        features: size of dimension 1 (image channels).
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        w = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))[0]
        self.weight = nn.Parameter(w.float())

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = torch.linalg.slogdet(self.weight)[1] * math.prod(x.shape[2:])
        return apply_channels(self.weight, x), ladj.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = -torch.linalg.slogdet(self.weight)[1] * math.prod(z.shape[2:])
        return apply_channels(torch.linalg.inv(self.weight), z), ladj.expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"features={self.weight.shape[0]}"
