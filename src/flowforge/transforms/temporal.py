r"""Transforms of sequences ``(batch, T, *frame)``: one flow per frame, and an autoregressive
prior over time.

A flow over a sequence whose likelihood factorises over time (VideoFlow, Kumar et al. 2020,
https://arxiv.org/abs/1903.01434) maps each frame ``x_t`` to a latent ``z_t = f(x_t)`` with
one invertible frame flow (:class:`FrameWise`), and models the latents autoregressively,
:math:`p(z_t \mid z_{<t}) = \mathcal N(\mu_t, \sigma_t^2)` with
:math:`(\mu_t, \log\sigma_t) = g(z_{t-k}, \ldots, z_{t-1})`. The conditional Gaussian is an
affine map of ``z_t`` to standard-normal noise, :math:`u_t = (z_t - \mu_t) / \sigma_t`
(:class:`TemporalAffine`), so that with a standard-normal base

.. math::
    \log p(x_{1:T}) = \sum_{t=1}^T \Big[\log p(z_t \mid z_{<t})
        + \log\Big|\det \frac{\partial f}{\partial x_t}\Big|\Big], \qquad
    \log p(z_t \mid z_{<t}) = \log \mathcal N(u_t; 0, I) - \textstyle\sum \log \sigma_t .

Both keep the per-frame terms apart (``frame_terms``), whose sum over ``t`` is the ``ladj``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowforge.transforms.base import Transform, check_event
from flowforge.transforms.univariate import Affine, Transformer

__all__ = ["FrameWise", "TemporalAffine", "per_frame_context"]


def per_frame_context(context: Tensor | None, frames: int) -> Tensor | None:
    """A sequence's context ``(B, *)`` repeated for each of its ``frames``: ``(B T, *)``."""
    return None if context is None else context.repeat_interleave(frames, dim=0)


class FrameWise(Transform):
    r"""One transform applied to every frame of a sequence: ``(B, T, *frame)`` is mapped as
    ``B T`` frames, and the log-determinant is the sum of the frames',
    :math:`\sum_t \log|\det \partial f / \partial x_t|` (the Jacobian is block diagonal). A
    context ``(B, K)`` is shared by the frames of its sequence.

    Arguments:
        transform: the frame flow, over ``(B, *frame)``.
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    def frame_terms(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z, ladj)`` with ``ladj`` per frame, ``(B, T)``."""
        return self._map(x, context, self.transform.forward)

    def _map(
        self, x: Tensor, context: Tensor | None, step: Callable[..., tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, Tensor]:
        if x.dim() < 3:
            raise ValueError(f"'x' should be a sequence (batch, T, *frame), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        y, ladj = step(x.flatten(0, 1), per_frame_context(context, t))
        return y.unflatten(0, (b, t)), ladj.view(b, t)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, ladj = self.frame_terms(x, context)
        return z, ladj.sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, ladj = self._map(z, context, self.transform.inverse)
        return x, ladj.sum(1)


class TemporalAffine(Transform):
    r"""The conditional Gaussian :math:`p(z_t \mid z_{<t})` of a sequence of frames, as the
    affine map :math:`u_t = (z_t - \mu_t) e^{-s_t}` to standard-normal noise.

    The parameters of frame ``t`` come from the conditioner applied to the ``past`` frames
    before it, stacked along the channels (oldest first) with one constant plane per past frame
    saying whether it exists (1) or lies before the sequence's start (0, the frame itself
    zero): ``(mu_t, s_t) = g([z_{t-k}, ..., z_{t-1}, m_{t-k}, ..., m_{t-1}])`` of
    ``k (C + 1)`` channels. The first frame's parameters therefore come from no data, as a
    learned prior's do. The Jacobian is block lower triangular in time, so
    :math:`\log|\det| = -\sum_t \sum s_t`. The forward (density) direction runs the
    conditioner once on all frames; the inverse (sampling) direction frame by frame.
    ``s`` is :class:`~flowforge.transforms.univariate.Affine`'s bounded log-scale. With a
    zero-initialised conditioner the map starts as the identity.

    Arguments:
        frame_shape: ``(C, *spatial)`` of one frame of latents.
        conditioner: a factory ``(in_channels, out_channels) -> nn.Module`` called with
            ``(past * (C + 1), 2 C)``, or a module built for them, called as
            ``conditioner(h, context)`` on ``(B T, past (C + 1), *spatial)``.
        past: how many past frames ``k`` condition each frame.
        transformer: the element-wise affine map (its ``scale_bound``).
    """

    def __init__(
        self,
        frame_shape: tuple[int, ...],
        conditioner: nn.Module | Callable[[int, int], nn.Module],
        past: int = 2,
        transformer: Transformer | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in frame_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"'frame_shape' should be positive sizes, got {frame_shape}")
        if isinstance(past, bool) or not isinstance(past, int) or past < 1:
            raise ValueError(f"'past' should be a positive integer, got {past!r}")
        self.frame_shape, self.past = shape, past
        self.transformer = Affine() if transformer is None else transformer
        c, p = shape[0], self.transformer.params_per_dim
        if not isinstance(conditioner, nn.Module):
            conditioner = conditioner(past * (c + 1), c * p)
        self.conditioner = conditioner

    def _check(self, z: Tensor) -> None:
        if z.dim() != len(self.frame_shape) + 2:
            raise ValueError(
                f"'z' should be a sequence (batch, T, {', '.join(map(str, self.frame_shape))}), "
                f"got {tuple(z.shape)}"
            )
        check_event(z, (z.shape[1], *self.frame_shape), "z")

    def windows(self, z: Tensor, first: int = 0) -> Tensor:
        """The conditioner's inputs of frames ``first, ..., T'`` given the known frames ``z``
        ``(B, T', *frame)``: for frame ``t`` the ``past`` frames before it (zeros before the
        start) and their presence planes, ``(B, T' - first + 1, past (C + 1), *spatial)``. The
        last window is that of frame ``T'``, the next to come."""
        b, known = z.shape[:2]
        k, n = self.past, known - first + 1
        padded = torch.cat([z.new_zeros(b, k, *self.frame_shape), z], dim=1)
        frames = torch.stack([padded[:, first + j : first + j + n] for j in range(k)], dim=2)
        index = torch.arange(first - k, first - k + n, device=z.device)[:, None]
        index = index + torch.arange(k, device=z.device)
        present = (index >= 0).to(z.dtype)  # (n, k): frame t - k + j exists
        spatial = self.frame_shape[1:]
        planes = present.view(1, n, k, *(1 for _ in spatial)).expand(b, n, k, *spatial)
        return torch.cat([frames.flatten(2, 3), planes], dim=2)

    def _params(self, h: Tensor, context: Tensor | None) -> Tensor:
        """Conditioner inputs ``(B, n, past (C + 1), *spatial)`` -> parameters ``(B, n,
        *frame, P)``."""
        b, n = h.shape[:2]
        out = self.conditioner(h.flatten(0, 1), per_frame_context(context, n))
        out = out.unflatten(1, (self.frame_shape[0], self.transformer.params_per_dim))
        return out.movedim(2, -1).unflatten(0, (b, n))

    def frame_terms(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(u, ladj)`` with ``ladj = -sum s_t`` per frame, ``(B, T)``."""
        self._check(z)
        params = self._params(self.windows(z[:, :-1]), context)  # windows of frames 0..T-1
        u, log_d = self.transformer.inverse(z, params)
        return u, log_d.flatten(2).sum(2)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u, ladj = self.frame_terms(z, context)
        return u, ladj.sum(1)

    def extend(
        self, known: Tensor, u: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Continues the sequence ``known`` ``(B, T0, *frame)`` (``T0 >= 0``) frame by frame
        from the noise ``u`` ``(B, T1, *frame)`` of the frames to come, :math:`z_t = \\mu_t +
        e^{s_t} u_t`; returns the whole sequence ``(B, T0 + T1, *frame)`` and the
        log-determinant of the new frames, ``(B,)``."""
        frames, ladj = list(known.unbind(1)), u.new_zeros(u.shape[0])
        empty = u.new_zeros(u.shape[0], 0, *self.frame_shape)
        for t in range(u.shape[1]):
            recent = frames[-self.past :]  # all a window sees, at their relative indices
            h = self.windows(torch.stack(recent, 1) if recent else empty, len(recent))
            z_t, log_d = self.transformer.forward(u[:, t], self._params(h, context)[:, 0])
            frames.append(z_t)
            ladj = ladj + log_d.flatten(1).sum(1)
        return torch.stack(frames, 1), ladj

    def inverse(self, u: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(u)
        return self.extend(u[:, :0], u, context)

    def extra_repr(self) -> str:
        return f"frame_shape={self.frame_shape}, past={self.past}"
