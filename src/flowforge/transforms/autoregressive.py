r"""Masked autoregressive layers: a MADE conditioner, an element-wise transformer and an order.

.. math::
    z_i = \tau(x_i; \theta_i(x_{<i}, c)), \qquad
    \log|\det J| = \textstyle\sum_i \log \tau'(x_i; \theta_i)

where ``<i`` means "before ``i`` in the order", ``theta`` is a :class:`~flowforge.nn.made.MADE`
and ``tau`` any :class:`~flowforge.transforms.univariate.Transformer` (affine: MAF; spline:
autoregressive NSF; SOS polynomial: SOS flow). The Jacobian is triangular in the order.

**Cost.** The forward direction (data to latent, the density) needs all ``theta_i``, which
depend on the known ``x``: **one** MADE pass. The inverse (sampling) recovers ``x_i`` only
after ``x_{<i}``: **D** sequential steps. They do not repeat the network: :meth:`MADE.sweep`
computes each hidden unit once, as soon as the inputs it reads are known, so the D steps
together cost about one pass of matrix products (in D small pieces), where the usual method
(nflows, normflows, zuko) runs D full passes.

MAF (Papamakarios, Pavlakou and Murray 2017, https://arxiv.org/abs/1705.07057) stacks these
layers with the affine transformer; IAF (Kingma et al. 2016, https://arxiv.org/abs/1606.04934)
is ``Inverse(MaskedAutoregressive(...))``: one pass to sample and to score its own samples, D
sequential steps for the density of an external point. The slow direction works in every case;
**training through it** (train mode with gradients on: an IAF fitted by maximum likelihood, a
MAF by reverse KL) pays the D steps at every step where the other model would pay one pass, so
that alone emits one :class:`SlowDirectionWarning` per layer. Sampling, evaluation and figures
run without gradients (``Flow.sample`` is under ``torch.no_grad``) and never warn: there the
slow direction is the model's designed trade-off, with nothing for the user to change.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from flowforge.nn.made import MADE
from flowforge.transforms.base import Transform
from flowforge.transforms.univariate import Transformer

__all__ = ["MaskedAutoregressive", "SlowDirectionWarning"]


class SlowDirectionWarning(UserWarning):
    """Warns that a model is trained through its slow autoregressive direction, which takes
    one sequential step per dimension (emitted only in train mode with gradients on)."""


class MaskedAutoregressive(Transform):
    """One masked autoregressive layer over vectors ``(B, D)``.

    Arguments:
        features: number of dimensions ``D``.
        transformer: the element-wise transformer (e.g. ``Affine()``,
            ``RationalQuadraticSpline()``, ``SumOfSquaresPolynomial()``).
        hidden: hidden sizes of the MADE (one size when ``residual_blocks > 0``).
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation of ``1..D``.
        residual_blocks: residual blocks of the MADE (0: plain masked MLP).
        activation: MADE activation.
        context_features: size of the conditioning vector (0: unconditional).
        seed: seed of a random order.
    """

    fast_forward = True
    fast_inverse = False

    def __init__(
        self,
        features: int,
        transformer: Transformer,
        hidden: Sequence[int] = (64, 64),
        order: str | Sequence[int] | Tensor = "natural",
        residual_blocks: int = 0,
        activation: str = "relu",
        context_features: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(transformer, Transformer):
            raise TypeError(
                f"'transformer' should be a Transformer, got {type(transformer).__name__}"
            )
        self.transformer = transformer
        self.made = MADE(
            features,
            transformer.params_per_dim,
            hidden,
            order,
            residual_blocks,
            activation,
            context_features,
            seed,
        )
        self._warned = False

    @property
    def features(self) -> int:
        return self.made.features

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        out = self.made(x, context)
        return out.reshape(x.shape[0], self.features, self.transformer.params_per_dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, logd = self.transformer(x, self._params(x, context))
        return z, logd.sum(1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        training = self.training and torch.is_grad_enabled()  # as Flow's data check
        if self.features > 1 and training and not self._warned:
            self._warned = True
            warnings.warn(
                f"training through {type(self).__name__}.inverse: {self.features} sequential "
                "steps (one per dimension) at every step, where the forward direction takes "
                "one pass. To fit a density use a MAF (maf), to sample or fit by reverse KL an "
                "IAF (iaf, or Inverse(...)).",
                SlowDirectionWarning,
                stacklevel=2,
            )
        xs: dict[int, Tensor] = {}  # dimension -> (B,), filled in the order
        logds: dict[int, Tensor] = {}

        def solve(i: int, params: Tensor) -> Tensor:
            xs[i], logds[i] = self.transformer.inverse(z[:, i], params)
            return xs[i]

        self.made.sweep(solve, z.shape[0], context)
        dims = range(self.features)
        return torch.stack([xs[i] for i in dims], 1), torch.stack([logds[i] for i in dims], 1).sum(
            1
        )

    def extra_repr(self) -> str:
        return f"features={self.features}"
