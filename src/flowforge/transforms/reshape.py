r"""Reshaping transforms for images: squeeze, flatten, factor-out and the multi-scale architecture.

All of them only move entries around, so their Jacobian is a permutation and ``ladj = 0``.

Multi-scale flows (RealNVP, Dinh et al. 2016, https://arxiv.org/abs/1605.08803, section 3.6;
Glow, Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039) factor out half of the
channels after each scale. Here the factored-out latents are **not** returned on a side
channel: :class:`FactorOut` passes them through unchanged while the rest of the flow acts on
the kept half, and each scale ends with the :class:`Unsqueeze` that undoes its
:class:`Squeeze`. The latent of a :class:`MultiScale` transform therefore has the event shape
``(C, H, W)`` of the data, holds every factored-out latent at fixed positions, and
``Flow.log_prob`` needs nothing special; :meth:`MultiScale.latents` extracts the per-scale
pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowforge.transforms.base import Compose, Transform

__all__ = [
    "FactorOut",
    "Flatten",
    "MultiScale",
    "Squeeze",
    "Unsqueeze",
    "check_multiscale_shape",
    "squeeze",
    "unsqueeze",
]


def squeeze(x: Tensor, factor: int = 2) -> Tensor:
    """Space-to-depth: ``(B, C, H, W) -> (B, C * f * f, H / f, W / f)`` (RealNVP, figure 3).

    Each output channel block ``c * f * f + i * f + j`` holds the pixels at offset ``(i, j)`` of
    every ``f x f`` patch of input channel ``c``.
    """
    b, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"'x' height and width should be divisible by {factor}, got {h}x{w}")
    x = x.reshape(b, c, h // factor, factor, w // factor, factor)  # (B, C, H/f, f, W/f, f)
    x = x.permute(0, 1, 3, 5, 2, 4)  # (B, C, f, f, H/f, W/f)
    return x.reshape(b, c * factor * factor, h // factor, w // factor)


def unsqueeze(x: Tensor, factor: int = 2) -> Tensor:
    """Depth-to-space, the inverse of :func:`squeeze`: ``(B, C f^2, H, W) -> (B, C, H f, W f)``."""
    b, c, h, w = x.shape
    if c % (factor * factor):
        raise ValueError(f"'x' channels should be divisible by {factor * factor}, got {c}")
    x = x.reshape(b, c // factor**2, factor, factor, h, w)  # (B, C, f, f, H, W)
    x = x.permute(0, 1, 4, 2, 5, 3)  # (B, C, H, f, W, f)
    return x.reshape(b, c // factor**2, h * factor, w * factor)


def _zeros(x: Tensor) -> Tensor:
    return x.new_zeros(x.shape[0])


class Squeeze(Transform):
    """The squeeze operation as a transform: ``(C, H, W) -> (4C, H/2, W/2)``, ``ladj = 0``.

    Arguments:
        factor: the patch size ``f`` (2 in RealNVP and Glow).
    """

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"'factor' should be positive, got {factor}")
        self.factor = int(factor)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return squeeze(x, self.factor), _zeros(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return unsqueeze(z, self.factor), _zeros(z)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Unsqueeze(Squeeze):
    """The inverse of :class:`Squeeze`: ``(4C, H, W) -> (C, 2H, 2W)``, ``ladj = 0``."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return super().inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return super().forward(z, context)


class Flatten(Transform):
    """Flattens the event: ``(B, *event_shape) -> (B, prod(event_shape))``, ``ladj = 0``.

    Puts vector flows (NICE, RealNVP with MLPs) on images.

    Arguments:
        event_shape: the unflattened event shape, e.g. ``(1, 28, 28)``.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        shape = tuple(int(s) for s in event_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"'event_shape' should be positive sizes, got {event_shape}")
        self.event_shape = shape

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), _zeros(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.reshape(z.shape[0], *self.event_shape), _zeros(z)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"


class FactorOut(Transform):
    r"""Factors out the first ``factored`` channels and applies ``inner`` to the rest.

    .. math:: z = \big(x_{1:k},\ g(x_{k+1:C})\big), \qquad \log|\det J| = \log|\det J_g|

    The factored-out channels go straight to the latent (their density comes from the base,
    through any prior transform placed before this one); ``inner`` must keep the shape of
    what it gets.

    Arguments:
        inner: the transform of the kept channels (the rest of the multi-scale flow).
        factored: how many leading channels are factored out.
    """

    def __init__(self, inner: Transform, factored: int) -> None:
        super().__init__()
        if factored < 1:
            raise ValueError(f"'factored' should be positive, got {factored}")
        self.inner, self.factored = inner, int(factored)

    @property
    def fast_forward(self) -> bool:  # type: ignore[override]
        return self.inner.fast_forward

    @property
    def fast_inverse(self) -> bool:  # type: ignore[override]
        return self.inner.fast_inverse

    def _split_apply(
        self, x: Tensor, step: Callable[..., tuple[Tensor, Tensor]], context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if x.shape[1] <= self.factored:
            raise ValueError(
                f"'x' should have more than factored={self.factored} channels, got {x.shape[1]}"
            )
        out, kept = x[:, : self.factored], x[:, self.factored :]  # (B, k, *), (B, C - k, *)
        kept, ladj = step(kept, context)
        return torch.cat([out, kept], dim=1), ladj

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._split_apply(x, self.inner.forward, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._split_apply(z, self.inner.inverse, context)

    def extra_repr(self) -> str:
        return f"factored={self.factored}"


class MultiScale(Compose):
    r"""The multi-scale architecture: per scale, squeeze, steps, factor out half the channels.

    With steps ``levels = [T_1, ..., T_L]``, split priors ``[P_1, ..., P_{L-1}]`` and optional
    full-resolution ``heads = [A_1, ..., A_L]``, scale ``l`` acting on ``(C_l, H_l, W_l)`` is

    .. code-block:: text

        (C_l, H_l, W_l) --A_l--> --Squeeze--> (4 C_l, H_l/2, W_l/2) --T_l--> --P_l-->
            first 2 C_l channels: factored out (latent)
            last 2 C_l channels : scale l + 1, on (2 C_l, H_l/2, W_l/2)
        --Unsqueeze--> (C_l, H_l, W_l)

    and the last scale is ``A_L``, squeeze, ``T_L``, unsqueeze. ``A_l`` keeps the shape
    ``(C_l, H_l, W_l)`` (RealNVP's checkerboard couplings, which come before each squeeze) and
    ``T_l`` the shape ``(4 C_l, H_l/2, W_l/2)`` (RealNVP's channel couplings; Glow's steps).
    ``P_l`` is the learned prior of the factored-out half given the kept half (Glow, section
    3.3 and its code's ``split2d``): a channel coupling where the kept half conditions an
    affine map of the factored half, so that with a standard-normal base
    :math:`p(z_l \mid h_l) = \mathcal{N}(\mu(h_l), \sigma(h_l)^2)`. Leave it out (``None``)
    for RealNVP's plain factor-out. The whole transform keeps the event shape, so the base
    distribution sees one ``(C, H, W)`` latent holding every scale.

    Arguments:
        levels: the steps ``T_l`` of each scale, at least one.
        priors: ``len(levels) - 1`` split priors (transforms of the ``4 C_l`` channels), or
            ``None`` for none.
        heads: ``len(levels)`` transforms applied before each squeeze, or ``None``.
        channels: channels ``C_1`` of the input (sets how many channels each scale factors out).
    """

    def __init__(
        self,
        levels: Sequence[Transform],
        priors: Sequence[Transform] | None = None,
        heads: Sequence[Transform] | None = None,
        channels: int = 1,
    ) -> None:
        levels = list(levels)
        if not levels:
            raise ValueError("'levels' should hold at least one transform")
        if priors is not None and len(priors) != len(levels) - 1:
            raise ValueError(
                f"'priors' should hold len(levels) - 1 = {len(levels) - 1} transforms, "
                f"got {len(priors)}"
            )
        if heads is not None and len(heads) != len(levels):
            raise ValueError(
                f"'heads' should hold len(levels) = {len(levels)} transforms, got {len(heads)}"
            )
        if channels < 1:
            raise ValueError(f"'channels' should be positive, got {channels}")
        last = len(levels) - 1
        head = [] if heads is None else [heads[last]]
        inner: list[Transform] = [*head, Squeeze(), levels[last], Unsqueeze()]
        for i in range(last - 1, -1, -1):
            c = channels * 2**i  # input channels of scale i
            head = [] if heads is None else [heads[i]]
            prior = [] if priors is None else [priors[i]]
            inner = [
                *head,
                Squeeze(),
                levels[i],
                *prior,
                FactorOut(Compose(inner), 2 * c),
                Unsqueeze(),
            ]
        super().__init__(inner)
        self.channels, self.n_levels = int(channels), len(levels)

    def latents(self, z: Tensor) -> list[Tensor]:
        """Splits a latent ``(B, C, H, W)`` into the per-scale latents, finest first.

        Scale ``l = 1, ..., L - 1`` gives ``(B, 2^l C, H / 2^l, W / 2^l)``; the last scale
        gives ``(B, 2^{L+1} C, H / 2^L, W / 2^L)``.
        """
        out = []
        for level in range(self.n_levels):
            z = squeeze(z)  # (B, 4 C_l, H_l / 2, W_l / 2)
            if level == self.n_levels - 1:
                out.append(z)
            else:
                k = z.shape[1] // 2
                out.append(z[:, :k])
                z = z[:, k:]
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, levels={self.n_levels}"


def check_multiscale_shape(event_shape: Sequence[int], levels: int) -> None:
    """Raises a ``ValueError`` unless ``event_shape = (C, H, W)`` can be squeezed ``levels``
    times, i.e. ``H`` and ``W`` are divisible by ``2 ** levels``."""
    if len(event_shape) != 3:
        raise ValueError(f"'event_shape' should be (C, H, W), got {tuple(event_shape)}")
    if levels < 1:
        raise ValueError(f"'levels' should be positive, got {levels}")
    f = 2**levels
    h, w = event_shape[1], event_shape[2]
    if h % f or w % f:
        raise ValueError(f"'levels'={levels} needs height and width divisible by {f}, got {h}x{w}")
