r"""Lipschitz-constrained layers for invertible residual blocks: spectral norm and LipSwish.

A residual block :math:`y = x + g(x)` is invertible when :math:`\mathrm{Lip}(g) < 1` (Behrmann et
al. 2019, https://arxiv.org/abs/1811.00995). With 1-Lipschitz activations, bounding the spectral
norm of every weight by a coefficient :math:`c < 1` gives :math:`\mathrm{Lip}(g) \le c^L \le c`.

Spectral normalisation (Miyato et al. 2018, https://arxiv.org/abs/1802.05957) estimates
:math:`\sigma = \|W\|_2` by power iteration and uses

.. math:: \hat W = W / \max(1, \sigma / c),

so a weight already within the bound is left alone (Residual Flows, Chen et al. 2019,
https://arxiv.org/abs/1906.02735). The power-iteration vectors ``u`` and ``v`` live in buffers:
they are refined (to a relative tolerance, at most ``max_iterations`` steps) in training mode and
kept in eval mode, so an evaluated model is a fixed function that survives ``state_dict``.

**Stale estimates.** In eval mode the vectors are re-checked whenever the weight changed since
they were last refined (its tensor or its in-place version counter differ: an optimizer step,
``load_state_dict`` of edited weights, a manual edit): the power iteration runs, and its
vectors are kept if it moved :math:`\sigma` by more than ``tol`` (relative). Without this a
model evaluated after its weights were edited kept the old :math:`\sigma`, so :math:`\hat W`
could exceed ``coeff`` and residual blocks stopped inverting (issue 19, item 10). A checkpoint's
own vectors pass the check unchanged, so a loaded model computes exactly what was saved.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LipSwish", "SpectralNormConv2d", "SpectralNormLinear"]


def _check_coeff(coeff: float, tol: float, max_iterations: int) -> None:
    if not 0.0 < coeff < 1.0:
        raise ValueError(f"'coeff' should be in (0, 1), got {coeff}")
    if tol <= 0:
        raise ValueError(f"'tol' should be positive, got {tol}")
    if max_iterations < 1:
        raise ValueError(f"'max_iterations' should be positive, got {max_iterations}")


class _SpectralNorm(nn.Module):
    """Power iteration on a linear operator ``A`` given as ``apply(v) = A v`` and
    ``apply_t(u) = A^T u``; subclasses own the weight and the operator."""

    coeff: float
    tol: float
    max_iterations: int
    u: Tensor
    v: Tensor

    def _init_vectors(self, u_shape: tuple[int, ...], v_shape: tuple[int, ...]) -> None:
        g = torch.Generator().manual_seed(0)
        self.register_buffer("u", F.normalize(torch.randn(u_shape, generator=g).flatten(), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(v_shape, generator=g).flatten(), dim=0))

    def _power_iteration(
        self, apply: Callable[[Tensor], Tensor], apply_t: Callable[[Tensor], Tensor]
    ) -> None:
        """Refines ``u``, ``v`` in place until ``sigma = u^T A v`` changes by less than ``tol``
        (relative) or ``max_iterations`` steps are done. A zero operator leaves them unchanged
        (the normalisation is then the identity), so a zero-initialised weight cannot collapse
        the vectors to zero."""
        with torch.no_grad():
            u, v = self.u, self.v
            sigma = torch.dot(u, apply(v))
            for _ in range(self.max_iterations):
                w = apply_t(u)
                if not bool(w.abs().sum() > 0):  # a zero operator: keep the vectors as they are
                    break
                v = F.normalize(w, dim=0)
                u = F.normalize(apply(v), dim=0)
                new = torch.dot(u, apply(v))
                done = bool((new - sigma).abs() <= self.tol * new.abs())
                sigma = new
                if done:
                    break
            self.u.copy_(u)
            self.v.copy_(v)

    def _estimate(
        self, weight: Tensor, apply: Callable[[Tensor], Tensor], apply_t: Callable[[Tensor], Tensor]
    ) -> None:
        """Refines ``u``, ``v`` in training mode; in eval mode only when ``weight`` changed since
        they were last refined and the power iteration moves ``sigma`` by more than ``tol``."""
        if self.training:  # the weight changes after this call (an optimizer step): re-check
            self._power_iteration(apply, apply_t)
            self._estimated_for = None
            return
        key = (weight.data_ptr(), weight._version)
        if key != getattr(self, "_estimated_for", None):
            with torch.no_grad():
                u, v = self.u.clone(), self.v.clone()
                sigma = torch.dot(u, apply(v))
                self._power_iteration(apply, apply_t)
                new = torch.dot(self.u, apply(self.v))
                if bool((new - sigma).abs() <= self.tol * new.abs()):
                    self.u.copy_(u)  # still valid: keep the vectors bit for bit
                    self.v.copy_(v)
        self._estimated_for = key

    def normalised(self, apply: Callable[[Tensor], Tensor]) -> Tensor:
        """The scale ``1 / max(1, sigma / c)`` with ``sigma = u^T A v`` (differentiable)."""
        # clones: later training-mode calls refine the buffers in place
        sigma = torch.dot(self.u.clone(), apply(self.v.clone()))
        return 1.0 / torch.clamp(sigma / self.coeff, min=1.0)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}, tol={self.tol}, max_iterations={self.max_iterations}"


class SpectralNormLinear(_SpectralNorm):
    r"""A linear layer whose weight has spectral norm at most ``coeff``.

    Arguments:
        in_features, out_features: sizes.
        coeff: the bound :math:`c \in (0, 1)` on :math:`\|W\|_2` (0.98 in Residual Flows, 0.9
            in i-ResNet).
        tol: relative tolerance of the power iteration on :math:`\sigma`.
        max_iterations: cap on power-iteration steps per training-mode call.
        zero_init: start with a zero weight and bias (a residual block at the identity).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        coeff: float = 0.98,
        tol: float = 1e-3,
        max_iterations: int = 50,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"'in_features' and 'out_features' should be positive, "
                f"got {in_features}, {out_features}"
            )
        _check_coeff(coeff, tol, max_iterations)
        self.coeff, self.tol, self.max_iterations = coeff, tol, max_iterations
        linear = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(linear.weight.detach().clone())  # (out, in)
        self.bias = nn.Parameter(linear.bias.detach().clone())  # (out,)
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)
        self._init_vectors((out_features,), (in_features,))
        if not zero_init:
            self._power_iteration(self._apply_w, self._apply_wt)

    def _apply_w(self, v: Tensor) -> Tensor:
        return self.weight @ v

    def _apply_wt(self, u: Tensor) -> Tensor:
        return self.weight.t() @ u

    def normalised_weight(self) -> Tensor:
        """:math:`\\hat W` ``(out, in)``; in training mode the power iteration runs first (in eval
        mode, only when the weight changed since the last one)."""
        self._estimate(self.weight, self._apply_w, self._apply_wt)
        return self.weight * self.normalised(self._apply_w)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalised_weight(), self.bias)


class SpectralNormConv2d(_SpectralNorm):
    r"""A stride-1, same-padding convolution whose operator norm is at most ``coeff``.

    The power iteration runs on the convolution as a linear map of images of ``input_size``
    (Gouk et al. 2018, https://arxiv.org/abs/1804.04368; Residual Flows, section 3.4): ``A v`` is
    the convolution and ``A^T u`` the transposed convolution, both without bias. The bound holds
    for inputs of that spatial size (and, for circular boundaries, any size).

    Arguments:
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel size.
        input_size: ``(H, W)`` of the inputs.
        coeff, tol, max_iterations, zero_init: as in :class:`SpectralNormLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        input_size: tuple[int, int],
        coeff: float = 0.98,
        tol: float = 1e-3,
        max_iterations: int = 50,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"'kernel_size' should be odd and positive, got {kernel_size}")
        if len(input_size) != 2 or min(input_size) < 1:
            raise ValueError(f"'input_size' should be (H, W), got {input_size}")
        _check_coeff(coeff, tol, max_iterations)
        self.coeff, self.tol, self.max_iterations = coeff, tol, max_iterations
        self.input_size = tuple(input_size)
        self.padding = kernel_size // 2
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=self.padding)
        self.weight = nn.Parameter(conv.weight.detach().clone())  # (out, in, k, k)
        self.bias = nn.Parameter(conv.bias.detach().clone())  # (out,)
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)
        h, w = self.input_size
        self._init_vectors((out_channels, h, w), (in_channels, h, w))
        if not zero_init:
            self._power_iteration(self._apply_w, self._apply_wt)

    def _apply_w(self, v: Tensor) -> Tensor:
        image = v.reshape(1, self.weight.shape[1], *self.input_size)
        return F.conv2d(image, self.weight, padding=self.padding).flatten()

    def _apply_wt(self, u: Tensor) -> Tensor:
        image = u.reshape(1, self.weight.shape[0], *self.input_size)
        return F.conv_transpose2d(image, self.weight, padding=self.padding).flatten()

    def normalised_weight(self) -> Tensor:
        """The scaled kernel ``(out, in, k, k)``; in training mode the power iteration runs (in
        eval mode, only when the weight changed since the last one)."""
        self._estimate(self.weight, self._apply_w, self._apply_wt)
        return self.weight * self.normalised(self._apply_w)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, in, H, W) -> (B, out, H, W)
        return F.conv2d(x, self.normalised_weight(), self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, " + super().extra_repr()


class LipSwish(nn.Module):
    r"""LipSwish (Residual Flows, Chen et al. 2019, https://arxiv.org/abs/1906.02735, section 4):

    .. math:: \phi(z) = \frac{z \, \sigma(\beta z)}{1.1}, \qquad \beta = \mathrm{softplus}(b)

    :math:`\frac{d}{dz} z\sigma(\beta z)` depends on :math:`\beta z` only and peaks at about
    1.0998, so :math:`|\phi'| \le 1` for every :math:`\beta > 0`; unlike ELU or softplus its
    second derivative does not vanish where :math:`|\phi'|` is near 1. ``beta`` starts at 0.5.
    """

    def __init__(self) -> None:
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5).expm1().log())  # softplus^-1(0.5)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.raw_beta) * x) / 1.1

    def value_and_slope(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\phi(x)` and :math:`\phi'(x) = (s + \beta x s (1 - s)) / 1.1` with
        :math:`s = \sigma(\beta x)`."""
        beta = F.softplus(self.raw_beta)
        s = torch.sigmoid(beta * x)
        return x * s / 1.1, (s + beta * x * s * (1 - s)) / 1.1
