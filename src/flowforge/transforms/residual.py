r"""Invertible residual blocks :math:`z = x + g(x)` with a contractive :math:`g`.

i-ResNet (Behrmann et al. 2019, https://arxiv.org/abs/1811.00995) and Residual Flows (Chen et
al. 2019, https://arxiv.org/abs/1906.02735). If :math:`\mathrm{Lip}(g) < 1` the map is a
bijection (Banach), its inverse is the limit of the fixed-point iteration

.. math:: x_{k+1} = z - g(x_k), \qquad \|x_k - x\| \le \mathrm{Lip}(g)^k \|x_0 - x\|,

and :math:`\log|\det(I + J_g)| = \log\det(I + J_g)` is estimated by one of the estimators of
:mod:`flowforge.transforms.logdet`: a stochastic one in training mode, ``eval_estimator``
(exact by default, for small dimensions) in eval mode. The forward direction (data to latent)
costs one pass of ``g`` plus the estimator; the inverse is iterative (``fast_inverse = False``).

Gradients through the inverse are those of the implicit function :math:`x = z - g(x)`:
a hook on the output replaces the upstream gradient :math:`u` by :math:`u (I + J_g)^{-1}`,
itself solved by the fixed-point iteration :math:`w \leftarrow u - w J_g`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowforge.nn.lipschitz import LipSwish, SpectralNormConv2d, SpectralNormLinear
from flowforge.nn.mlp import make_activation
from flowforge.transforms.base import InverseDidNotConverge, Transform
from flowforge.transforms.logdet import ExactLogDet, NeumannLogDet

__all__ = ["LipschitzConvNet", "LipschitzMLP", "ResidualBlock"]


def _activation(name: str) -> nn.Module:
    return LipSwish() if name == "lipswish" else make_activation(name)


def _value_and_slope(act: nn.Module, h: Tensor) -> tuple[Tensor, Tensor]:
    """A 1-Lipschitz activation's output at ``h`` and its element-wise derivative (with
    autograd's convention at the kinks)."""
    if isinstance(act, LipSwish):
        return act.value_and_slope(h)
    if isinstance(act, nn.ELU):  # alpha e^h = out + alpha below zero
        out = F.elu(h, act.alpha)
        return out, torch.where(h > 0, torch.ones_like(h), out + act.alpha)
    if isinstance(act, nn.ReLU):
        return F.relu(h), (h > 0).to(h.dtype)
    if isinstance(act, nn.LeakyReLU):
        slope = torch.full_like(h, act.negative_slope)
        return F.leaky_relu(h, act.negative_slope), torch.where(h > 0, 1.0, slope)
    if isinstance(act, nn.Tanh):
        out = torch.tanh(h)
        return out, 1 - out * out
    raise TypeError(f"no derivative for activation {type(act).__name__}")


class LipschitzMLP(nn.Module):
    r"""A fully connected :math:`g` with :math:`\mathrm{Lip}(g) \le` ``coeff``: spectrally
    normalised linear layers (each to ``coeff``) with 1-Lipschitz activations between them.

    Arguments:
        features: input and output size.
        hidden: hidden layer sizes.
        coeff: Lipschitz coefficient of each layer, in (0, 1).
        activation: ``"lipswish"`` (Residual Flows) or a name of
            :data:`flowforge.nn.mlp.ACTIVATIONS` that is 1-Lipschitz (``"elu"`` in i-ResNet).
        context_features: size of a context concatenated to the input (the bound is in ``x``).
        tol, max_iterations: of the power iterations.
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        coeff: float = 0.98,
        activation: str = "lipswish",
        context_features: int = 0,
        tol: float = 1e-3,
        max_iterations: int = 50,
    ) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        if activation not in ("lipswish", "elu", "relu", "tanh", "leaky_relu"):
            raise ValueError(
                f"'activation' should be a 1-Lipschitz activation (lipswish, elu, relu, tanh, "
                f"leaky_relu), got {activation!r}"
            )
        self.context_features = context_features
        sizes = [features + context_features, *hidden, features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            if i > 0:
                layers.append(_activation(activation))
            last = i == len(sizes) - 2
            layers.append(SpectralNormLinear(a, b, coeff, tol, max_iterations, zero_init=last))
        self.net = nn.Sequential(*layers)

    def _inputs(self, x: Tensor, context: Tensor | None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(f"this network expects a 'context' of {self.context_features}")
            x = torch.cat([x, context.expand(x.shape[0], -1)], dim=1)
        return x

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(self._inputs(x, context))

    def forward_with_jacobian(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r""":math:`g(x)` ``(B, D)`` and its Jacobian :math:`\partial g_i / \partial x_j`
        ``(B, D, D)`` in one pass, by the chain rule layer by layer:
        :math:`J \leftarrow \hat W J` after a linear layer (the first keeps the columns of
        ``x``, not of the context) and :math:`J \leftarrow \mathrm{diag}(\phi'(h)) J` after an
        activation. Only first-order autograd is needed to differentiate the result, where
        :class:`~flowforge.transforms.logdet.ExactLogDet` otherwise takes ``D`` backward passes
        with ``create_graph`` (see ``docs/benchmarks.md`` for the speed-up)."""
        d = x.shape[1]
        h = self._inputs(x, context)
        jac: Tensor | None = None  # (B, width, D)
        for layer in self.net:
            if isinstance(layer, SpectralNormLinear):
                w = layer.normalised_weight()  # once per call: it runs the power iteration
                h = F.linear(h, w, layer.bias)
                jac = w[:, :d].expand(h.shape[0], -1, -1) if jac is None else w @ jac
            else:
                h, slope = _value_and_slope(layer, h)
                jac = slope.unsqueeze(-1) * jac
        assert jac is not None  # the network ends with a linear layer
        return h, jac


class LipschitzConvNet(nn.Module):
    r"""A convolutional :math:`g` with :math:`\mathrm{Lip}(g) \le` ``coeff``, the Residual Flows
    image block: LipSwish, 3x3 conv, LipSwish, 1x1 conv, LipSwish, 3x3 conv (Chen et al. 2019,
    appendix E), each convolution spectrally normalised for inputs of ``input_size``.

    Arguments:
        channels: input and output channels.
        hidden_channels: channels inside the block.
        input_size: ``(H, W)`` of the inputs.
        coeff: Lipschitz coefficient of each convolution.
        kernel_sizes: odd kernel sizes of the convolutions.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        input_size: tuple[int, int],
        coeff: float = 0.98,
        kernel_sizes: Sequence[int] = (3, 1, 3),
    ) -> None:
        super().__init__()
        if channels < 1 or hidden_channels < 1:
            raise ValueError(
                f"'channels' and 'hidden_channels' should be positive, "
                f"got {channels}, {hidden_channels}"
            )
        if not kernel_sizes:
            raise ValueError("'kernel_sizes' should not be empty")
        sizes = [channels, *[hidden_channels] * (len(kernel_sizes) - 1), channels]
        layers: list[nn.Module] = []
        for i, k in enumerate(kernel_sizes):
            last = i == len(kernel_sizes) - 1
            layers.append(LipSwish())
            layers.append(
                SpectralNormConv2d(sizes[i], sizes[i + 1], k, input_size, coeff, zero_init=last)
            )
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        # x: (B, C, H, W) -> (B, C, H, W)
        if context is not None:
            raise ValueError("LipschitzConvNet takes no 'context'")
        return self.net(x)


class ResidualBlock(Transform):
    r"""An invertible residual block :math:`z = x + g(x, c)`.

    Arguments:
        g: a module ``g(x, context) -> same shape as x`` with Lipschitz constant below 1 in
            ``x`` (:class:`LipschitzMLP`, :class:`LipschitzConvNet`); its last layer is
            zero-initialised, so the block starts at the identity.
        estimator: the log-det estimator in training mode (default: :class:`NeumannLogDet`,
            unbiased, 2 exact terms then a geometric(0.5) roulette).
        eval_estimator: the estimator in eval mode (default: :class:`ExactLogDet`, for small
            dimensions; use ``RouletteLogDet(n_exact_terms=20)`` for images, as the paper).
        atol, rtol: tolerance of the inverse's fixed-point iteration, per sample in the max
            norm over the event: :math:`\|x_{k+1} - x_k\| \le \mathrm{atol} +
            \mathrm{rtol}(\|x_{k+1}\| + \|z\|)`. Rounding errors of :math:`z - g(x)` scale
            with the sample's magnitude and the iteration amplifies them by up to
            :math:`1 / (1 - \mathrm{Lip}(g))`, so ``rtol=None`` (default) takes
            :math:`\max(10^{-6}, 64\,\epsilon)` with :math:`\epsilon` the machine epsilon of
            the input's dtype (``1e-6`` in float64, ``7.6e-6`` in float32).
        max_iterations: iteration cap; :class:`InverseDidNotConverge` is raised when reached.
            The error shrinks like :math:`\mathrm{Lip}(g)^k`: at :math:`\mathrm{Lip}(g) = 0.96`
            a relative ``1e-6`` takes about 340 iterations.
    """

    fast_inverse = False

    def __init__(
        self,
        g: nn.Module,
        estimator: nn.Module | None = None,
        eval_estimator: nn.Module | None = None,
        atol: float = 1e-8,
        rtol: float | None = None,
        max_iterations: int = 1000,
    ) -> None:
        super().__init__()
        if atol < 0 or (rtol is not None and rtol < 0) or atol + (rtol or 1.0) == 0:
            raise ValueError(f"'atol' and 'rtol' should be >= 0, not both 0: got {atol}, {rtol}")
        if max_iterations < 1:
            raise ValueError(f"'max_iterations' should be positive, got {max_iterations}")
        self.g = g
        self.estimator = NeumannLogDet() if estimator is None else estimator
        self.eval_estimator = ExactLogDet() if eval_estimator is None else eval_estimator
        self.atol, self.rtol, self.max_iterations = atol, rtol, max_iterations

    def _logdet(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        estimator = self.estimator if self.training else self.eval_estimator
        return estimator(self.g, x, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        gx, logdet = self._logdet(x, context)
        return x + gx, logdet

    def _rtol(self, dtype: torch.dtype) -> float:
        return max(1e-6, 64 * torch.finfo(dtype).eps) if self.rtol is None else self.rtol

    def _converged(self, new: Tensor, old: Tensor, ref: Tensor) -> tuple[bool, float]:
        # per sample, in the max norm over the event
        err = (new - old).reshape(new.shape[0], -1).abs().amax(1)
        size = new.reshape(new.shape[0], -1).abs().amax(1)
        size = size + ref.reshape(ref.shape[0], -1).abs().amax(1)
        ok = err <= self.atol + self._rtol(new.dtype) * size
        return bool(ok.all()), float(err.max())

    def _solve(self, z: Tensor, context: Tensor | None) -> Tensor:
        """The fixed point of ``x = z - g(x)``, without a graph."""
        with torch.no_grad():
            x = z
            for _ in range(self.max_iterations):
                new = z - self.g(x, context)
                done, err = self._converged(new, x, z)
                x = new
                if done:
                    return x
        raise InverseDidNotConverge(
            f"ResidualBlock inverse: no fixed point within atol={self.atol}, rtol={self.rtol} "
            f"after {self.max_iterations} iterations (last change {err:.2e}); is Lip(g) < 1?"
        )

    def _implicit(self, x: Tensor, z: Tensor, context: Tensor | None) -> Tensor:
        """``x`` with the gradient of the implicit function ``x = z - g(x)`` attached."""
        x_star = x.detach().requires_grad_(True)
        gx = self.g(x_star, context)
        out = z - gx  # value x (to tolerance); its graph carries the one-step gradient

        def solve_adjoint(u: Tensor) -> Tensor:
            # w (I + J) = u  <=>  w = u - w J
            w = u
            for _ in range(self.max_iterations):
                (wj,) = torch.autograd.grad(gx, x_star, w, retain_graph=True)
                new = u - wj
                done, err = self._converged(new, w, u)
                w = new
                if done:
                    return w
            raise InverseDidNotConverge(
                f"ResidualBlock inverse gradient: no solution after {self.max_iterations} "
                f"iterations (last change {err:.2e})"
            )

        out.register_hook(solve_adjoint)
        return out

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self._solve(z, context)
        if torch.is_grad_enabled():
            x = self._implicit(x, z, context)
        # the estimator differentiates w.r.t. its own copy, not through the hook above
        _, logdet = self._logdet(x.view_as(x), context)
        return x, -logdet

    def extra_repr(self) -> str:
        return f"atol={self.atol}, rtol={self.rtol}, max_iterations={self.max_iterations}"
