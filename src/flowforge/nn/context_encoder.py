r"""The conditioning network of image-conditioned flows (c-Glow) and the heads that read it.

c-Glow (Lu and Huang 2020, "Structured Output Learning with Conditional Generative Flows",
https://arxiv.org/abs/1905.13288) conditions every layer of a Glow on an input image. Here one
:class:`ContextEncoder` turns the context image ``(B, C_c, H, W)`` into a
:class:`FeaturePyramid`: one feature map per scale of the flow, at the resolution the flow's
steps see after each squeeze (``H / 2^(l+1)``). The pyramid travels down the flow as the
``context`` of the inner transforms; a layer takes the map whose height and width match its
input (:func:`features_at`). The paper gives each layer a conditioning network of its own on
the raw image; a shared encoder with small per-layer heads costs one pass per scale instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from flowforge.nn.conv import ConvNet, ZeroConv
from flowforge.nn.mlp import make_activation

__all__ = [
    "ContextEncoder",
    "FeatureConvNet",
    "FeaturePyramid",
    "FeatureZeroConv",
    "GlobalFeatureHead",
    "features_at",
]


class FeaturePyramid(tuple):
    """The per-scale feature maps of one context, finest first: a tuple of ``(B, F, H_l, W_l)``
    tensors with distinct spatial sizes. Passed as ``context`` to the transforms inside an
    image-conditioned flow."""

    def at(self, spatial: Sequence[int]) -> Tensor:
        """The map of spatial size ``spatial`` ``(H, W)``; a ``ValueError`` names the sizes
        the pyramid holds when none matches."""
        spatial = tuple(int(s) for s in spatial)
        for f in self:
            if tuple(f.shape[2:]) == spatial:
                return f
        sizes = [tuple(f.shape[2:]) for f in self]
        raise ValueError(f"no conditioning features of spatial size {spatial}; have {sizes}")


def features_at(context: Tensor | FeaturePyramid | None, x: Tensor) -> Tensor:
    """The conditioning features for input ``x`` ``(B, C, H, W)``: the pyramid's map of ``x``'s
    size, or ``context`` itself when it is already one ``(B, F, H, W)`` map (how a layer is
    tested alone). Raises a ``ValueError`` for a missing context or one of another size."""
    if context is None:
        raise ValueError("this layer is conditioned on an image: it expects a 'context'")
    if isinstance(context, FeaturePyramid):
        return context.at(x.shape[2:])
    if context.dim() != x.dim() or context.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"'context' should be features (batch, F, {', '.join(map(str, x.shape[2:]))}) at "
            f"the input's spatial size, got shape {tuple(context.shape)}"
        )
    return context


class ContextEncoder(nn.Module):
    """Encodes a context image into a :class:`FeaturePyramid` of ``scales`` maps.

    ``3x3 conv, act, 3x3 conv, act`` at full resolution, then per scale a stride-2 3x3
    convolution (halving height and width, rounding up), act, 3x3 conv, act: map ``l`` has
    ``features`` channels and size ``ceil(H / 2^(l+1))``, the size of the flow's steps at
    scale ``l`` of a multi-scale flow.

    Arguments:
        in_channels: channels of the context image (``C_c``).
        features: channels of every feature map (``F``).
        scales: number of maps.
        hidden_channels: width of the full-resolution stem (default ``features``).
        activation: name of the activation.
    """

    def __init__(
        self,
        in_channels: int,
        features: int,
        scales: int,
        hidden_channels: int | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = features if hidden_channels is None else hidden_channels
        for name, v in (("in_channels", in_channels), ("features", features), ("scales", scales)):
            if v < 1:
                raise ValueError(f"'{name}' should be positive, got {v}")
        if hidden < 1:
            raise ValueError(f"'hidden_channels' should be positive, got {hidden}")
        self.in_channels, self.features = int(in_channels), int(features)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            make_activation(activation),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            make_activation(activation),
        )
        levels = []
        c = hidden
        for _ in range(scales):
            levels.append(
                nn.Sequential(
                    nn.Conv2d(c, features, 3, stride=2, padding=1),
                    make_activation(activation),
                    nn.Conv2d(features, features, 3, padding=1),
                    make_activation(activation),
                )
            )
            c = features
        self.levels = nn.ModuleList(levels)

    def forward(self, context: Tensor) -> FeaturePyramid:
        """``(B, C_c, H, W)`` -> the pyramid ``[(B, F, H/2, W/2), (B, F, H/4, W/4), ...]``."""
        h = self.stem(context)
        out = []
        for level in self.levels:
            h = level(h)
            out.append(h)
        return FeaturePyramid(out)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, features={self.features}"


class FeatureConvNet(ConvNet):
    """Glow's coupling network whose input is concatenated with the conditioning features of
    its spatial size (c-Glow's conditional affine coupling). ``context`` is a
    :class:`FeaturePyramid` or one ``(B, F, H, W)`` map."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return super().forward(x, features_at(context, x))


class FeatureZeroConv(ZeroConv):
    """Glow's zero-initialised split-prior convolution, also reading the conditioning features
    of its spatial size."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return super().forward(x, features_at(context, x))


class GlobalFeatureHead(nn.Module):
    """Per-sample parameters from conditioning features: average over the pixels, then a
    zero-initialised linear map, ``(B, F, H, W) -> (B, out_features)``. Starts at output 0, so
    a conditional layer starts as its unconditional self."""

    def __init__(self, features: int, out_features: int) -> None:
        super().__init__()
        if features < 1 or out_features < 1:
            raise ValueError(
                f"'features' and 'out_features' should be positive, got {features}, {out_features}"
            )
        self.linear = nn.Linear(features, out_features)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features.mean(dim=tuple(range(2, features.dim()))))
