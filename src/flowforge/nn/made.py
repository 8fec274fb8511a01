r"""MADE: a masked MLP whose output ``i`` depends only on the inputs before ``i`` in an order.

Germain, Gregor, Murray and Larochelle 2015, "MADE: Masked Autoencoder for Distribution
Estimation", https://arxiv.org/abs/1502.03509.

Every unit gets a *degree*. The inputs' degrees are the order (a permutation of ``1..D``),
context inputs have degree 0, hidden units get degrees in ``[m, D - 1]`` (``m = 0`` when there
is a context or ``D = 1``, else ``m = 1``), and each output repeats the degree of the
dimension it parameterises. A connection is kept when

.. math::
    \text{hidden } k \leftarrow j: \; m(k) \ge m(j), \qquad
    \text{output } k \leftarrow j: \; m(k) > m(j),

so output ``i`` depends on input ``j`` only if ``order[j] < order[i]``. The masks are built once
from the degrees (one broadcast comparison per layer, no loop over dimensions) and stored as
buffers; each pass multiplies the weights by them. Hidden degrees cycle through their range
(deterministic, as nflows' and zuko's default) so every degree is present when the layer is at
least ``D - m`` wide.

**Inversion in one network's work.** Inverting an autoregressive layer needs the outputs of
dimension ``i`` once the inputs before it are known. Rather than ``D`` full passes,
:meth:`MADE.sweep` visits the degrees in order: a unit of degree ``m`` only reads units of
degree ``<= m``, so once input ``m`` is known its units are final and are computed once, from a
dense slice of the weights (units sorted by degree). The ``D`` steps together cost one pass of
matrix products (less: the hidden-to-hidden products are block-triangular), in small pieces,
and the result is exactly that of a full pass at the final inputs (the same weights, the same
sums). The same idea is the caching of fast autoregressive sampling in WaveNet-style models
(Paine et al. 2016, https://arxiv.org/abs/1611.09482).

With ``residual_blocks > 0`` the network is a residual MADE (Nash and Durkan 2019,
https://arxiv.org/abs/1906.04032 Appendix): an input layer, pre-activation residual blocks of
two masked layers with equal hidden degrees (so the skip connection keeps the property), and an
output layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.nn.init import antisymmetric_start, unit_pairs
from flowforge.nn.mlp import make_activation

__all__ = ["MADE", "MaskedLinear", "made_order"]

ORDERS = ("natural", "reversed", "random")


def made_order(features: int, order: str | Sequence[int] | Tensor, seed: int = 0) -> Tensor:
    """The input degrees ``(features,)``: a permutation of ``1..features``.

    Arguments:
        features: number of dimensions ``D``.
        order: ``"natural"`` (``1..D``), ``"reversed"`` (``D..1``), ``"random"`` (a permutation
            drawn from ``seed``) or an explicit permutation of ``1..D``.
        seed: seed of the random order.
    """
    if isinstance(order, str):
        if order == "natural":
            return torch.arange(1, features + 1)
        if order == "reversed":
            return torch.arange(features, 0, -1)
        if order == "random":
            g = torch.Generator().manual_seed(seed)
            return torch.randperm(features, generator=g) + 1
        raise ValueError(f"'order' should be one of {list(ORDERS)} or a permutation, got {order!r}")
    degrees = torch.as_tensor(order, dtype=torch.long).flatten()
    if not torch.equal(degrees.sort().values, torch.arange(1, features + 1)):
        raise ValueError(
            f"'order' should be a permutation of 1..{features}, got {degrees.tolist()}"
        )
    return degrees


class MaskedLinear(nn.Linear):
    """A linear layer whose weight ``(out, in)`` is multiplied by a fixed binary mask.

    ``degrees`` (``(out,)``, optional) are the MADE degrees of the outputs, kept (not saved in
    the state dict) for :meth:`MADE.sweep`.
    """

    def __init__(self, mask: Tensor, degrees: Tensor | None = None) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))
        self.register_buffer("degrees", degrees, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class _MaskedResidualBlock(nn.Module):
    """``h + L2(act(L1(act(h))))`` with masked layers of equal in and out degrees."""

    def __init__(self, mask: Tensor, degrees: Tensor, activation: str) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            make_activation(activation),  # not in place: h is also the skip input
            MaskedLinear(mask, degrees),
            make_activation(activation, inplace=True),
            MaskedLinear(mask, degrees),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.layers(h)


class MADE(nn.Module):
    """Masked autoregressive network from ``(B, D)`` (+ context) to ``(B, D * P)``.

    Output ``i * P + p`` is parameter ``p`` of dimension ``i``; it depends only on the inputs
    ``j`` with ``degrees[j] < degrees[i]`` and on the context.

    Arguments:
        features: number of dimensions ``D``.
        params_per_dim: outputs per dimension ``P``.
        hidden: hidden layer sizes; one size when ``residual_blocks > 0``.
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation of ``1..D``
            (see :func:`made_order`).
        residual_blocks: number of residual blocks (0: plain masked MLP).
        activation: activation name (see :data:`flowforge.nn.mlp.ACTIVATIONS`).
        context_features: size of a context vector, connected to every unit (0: none).
        seed: seed of the random order.
        zero_init: start at output 0 (the identity of every flowforge transformer) with live
            gradients: the last hidden units in pairs of equal degree and value, read with
            opposite weights (:func:`~flowforge.nn.init.antisymmetric_start`; in a residual
            MADE every layer that writes the residual stream copies the pairs' rows).
    """

    def __init__(
        self,
        features: int,
        params_per_dim: int = 1,
        hidden: Sequence[int] = (64, 64),
        order: str | Sequence[int] | Tensor = "natural",
        residual_blocks: int = 0,
        activation: str = "relu",
        context_features: int = 0,
        seed: int = 0,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"'features' should be positive, got {features}")
        if params_per_dim < 1:
            raise ValueError(f"'params_per_dim' should be positive, got {params_per_dim}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        hidden = list(hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"'hidden' should be one or more positive sizes, got {hidden}")
        if residual_blocks < 0:
            raise ValueError(f"'residual_blocks' should be >= 0, got {residual_blocks}")
        if residual_blocks and len(hidden) != 1:
            raise ValueError(
                f"'hidden' should have one width when residual_blocks > 0, got {hidden}"
            )
        make_activation(activation)  # validates the name
        self.features, self.params_per_dim = features, params_per_dim
        self.context_features = context_features

        degrees = made_order(features, order, seed)
        self.register_buffer("degrees", degrees)
        # (D + C,): context inputs have degree 0 and reach every unit
        in_deg = torch.cat([degrees, torch.zeros(context_features, dtype=torch.long)])
        low = 0 if context_features or features == 1 else 1

        def hidden_degrees(width: int) -> Tensor:
            return low + torch.arange(width) % max(features - low, 1)

        def mask(out_deg: Tensor, in_deg: Tensor, strict: bool) -> Tensor:
            # (out, in) from one broadcast comparison
            return out_deg[:, None] > in_deg[None, :] if strict else out_deg[:, None] >= in_deg

        widths = hidden if not residual_blocks else hidden[:1]
        layers: list[nn.Module] = []
        prev = in_deg
        for i, width in enumerate(widths):
            deg = hidden_degrees(width)
            if i > 0:
                layers.append(make_activation(activation, inplace=True))  # on a linear output
            layers.append(MaskedLinear(mask(deg, prev, strict=False), deg))
            prev = deg
        for _ in range(residual_blocks):
            layers.append(_MaskedResidualBlock(mask(prev, prev, strict=False), prev, activation))
        layers.append(make_activation(activation, inplace=True))  # on a linear or sum output
        out_deg = degrees.repeat_interleave(params_per_dim)
        self.output = MaskedLinear(mask(out_deg, prev, strict=True), out_deg)
        self.body = nn.Sequential(*layers)
        if zero_init:
            # the layers that write the last hidden units: the last hidden layer; in a residual
            # MADE (one hidden layer) it and every block's second layer, summed into the stream
            writers = [m for m in layers if isinstance(m, MaskedLinear)][-1:]
            writers += [m.layers[-1] for m in layers if isinstance(m, _MaskedResidualBlock)]
            antisymmetric_start(self.output, writers, unit_pairs(prev))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``x`` ``(B, D)``, ``context`` ``(B, C)`` -> ``(B, D * P)``."""
        if self.context_features:
            if context is None:
                raise ValueError(
                    f"this MADE expects a 'context' of {self.context_features} features"
                )
            x = torch.cat([x, context.expand(x.shape[0], -1)], dim=-1)
        return self.output(self.body(x))

    def _nodes(self) -> list[tuple[str, nn.Module | None, int, int]]:
        """The body as a graph: ``(kind, module, src, other)`` with kind ``"linear"``, ``"act"``
        or ``"add"`` (``src + other``); node 0 is the input, node ``k`` is entry ``k - 1``."""
        nodes: list[tuple[str, nn.Module | None, int, int]] = []
        for module in self.body:
            if isinstance(module, _MaskedResidualBlock):
                skip = len(nodes)
                for sub in module.layers:
                    kind = "linear" if isinstance(sub, MaskedLinear) else "act"
                    nodes.append((kind, sub, len(nodes), -1))
                nodes.append(("add", None, skip, len(nodes)))
            else:
                kind = "linear" if isinstance(module, MaskedLinear) else "act"
                nodes.append((kind, module, len(nodes), -1))
        return nodes

    def sweep(
        self,
        solve: Callable[[int, Tensor], Tensor],
        batch_size: int,
        context: Tensor | None = None,
    ) -> None:
        """Evaluates the network one input degree at a time, for autoregressive inversion.

        For each dimension ``i`` in the order, calls ``solve(i, params)`` with its outputs
        ``params`` ``(B, P)``, which depend only on the dimensions solved before, and uses the
        returned ``(B,)`` as input ``i``. Every unit is computed once (see the module
        docstring), so the whole sweep costs about one pass; the ``params`` equal those of
        :meth:`forward` at the solved inputs. Differentiable (no in-place writes).
        """
        if self.context_features and context is None:
            raise ValueError(f"this MADE expects a 'context' of {self.context_features} features")
        d = self.features
        in_deg = torch.cat([self.degrees, self.degrees.new_zeros(self.context_features)])
        degrees, perms, weights, biases = [in_deg], [torch.argsort(in_deg, stable=True)], [], []
        nodes = self._nodes()
        for kind, module, src, _ in nodes:
            if kind == "linear":
                assert isinstance(module, MaskedLinear)
                deg, perm = module.degrees, torch.argsort(module.degrees, stable=True)
                w = (module.weight * module.mask)[perm][:, perms[src]]
                weights.append(w)
                biases.append(module.bias[perm])
            else:
                deg, perm = degrees[src], perms[src]
                weights.append(None)
                biases.append(None)
            degrees.append(deg)
            perms.append(perm)
        # ends[k][m]: units of node k with degree <= m (a prefix once sorted by degree)
        levels = torch.arange(d, device=in_deg.device)
        ends = [
            torch.searchsorted(deg.sort().values, levels, right=True).tolist() for deg in degrees
        ]
        # the first input block (degree 0) is the context
        first = (
            context.expand(batch_size, -1)
            if self.context_features
            else self.output.weight.new_zeros(batch_size, 0)
        )
        blocks: list[list[Tensor]] = [[first]] + [[] for _ in nodes]
        dims = torch.argsort(self.degrees).tolist()  # dims[m]: the dimension of degree m + 1
        last = len(nodes)
        p = self.params_per_dim
        w_out = (self.output.weight * self.output.mask)[:, perms[last]]
        for m in range(d):
            for k, (kind, module, src, other) in enumerate(nodes, start=1):
                lo, hi = (ends[k][m - 1] if m else 0), ends[k][m]
                if kind == "linear":
                    inputs = torch.cat(blocks[src], dim=1)  # (B, units of degree <= m)
                    w = weights[k - 1][lo:hi, : inputs.shape[1]]
                    blocks[k].append(F.linear(inputs, w, biases[k - 1][lo:hi]))
                elif kind == "act":
                    assert module is not None
                    blocks[k].append(module(blocks[src][m]))
                else:
                    blocks[k].append(blocks[src][m] + blocks[other][m])
            i = dims[m]
            hidden = torch.cat(blocks[last], dim=1)  # units of degree <= m < degree of i
            rows = slice(i * p, (i + 1) * p)
            params = F.linear(hidden, w_out[rows, : hidden.shape[1]], self.output.bias[rows])
            blocks[0].append(solve(i, params)[:, None])  # input i has degree m + 1

    def extra_repr(self) -> str:
        d = self.degrees.tolist()
        order = d if len(d) <= 8 else d[:8] + ["..."]
        return f"features={self.features}, params_per_dim={self.params_per_dim}, order={order}"
