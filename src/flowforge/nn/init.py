r"""The conditioners' start: output exactly 0 (every layer at the identity), gradients alive.

A conditioner whose last layer is zero starts its flow at the identity, but it also gives every
earlier layer a zero gradient (:math:`\partial L / \partial h = W^\top \delta = 0`), and for
tens of steps only a near-zero ``W`` carries the hidden layers' changes to the output. Measured
side by side with zuko, whose last layers keep PyTorch's random start, that made flowforge's
affine flows learn more slowly per step on data that the flow has to stretch
(``docs/benchmarks.md``, "NLL against steps").

The *antisymmetric* start (after Zhang, Xu, Luo and Ma 2020, "A type of generalization error
induced by initialization in deep neural networks", https://arxiv.org/abs/1905.07777, which
subtracts a copy of the whole network) keeps both: the last hidden units are taken in pairs
``(a, b)`` that compute the same value at the start (row ``b`` of every layer that writes
them is a copy of row ``a``), and the last layer reads them with opposite weights,

.. math:: W_{:, b} = -W_{:, a}, \qquad c = 0 \quad\Rightarrow\quad
    W h + c = \textstyle\sum_{(a, b)} W_{:, a} (h_a - h_b) = 0

for every input (to rounding, about ``1e-7`` relative to the terms in float32: the two
products of a pair are summed in whatever order the matrix product takes), while
:math:`\partial L / \partial h_a = W_{:,a}^\top \delta` and :math:`-W_{:,a}^\top \delta` are
not zero, so the two copies move apart from the first step. ``W`` keeps its PyTorch draw
(uniform, bound :math:`1 / \sqrt{\text{fan-in}}`), so the parameters draw no extra random
numbers. A unit left without a partner (an odd count, or an odd count of one MADE degree)
gets a zero column.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["antisymmetric_start", "unit_pairs"]


def unit_pairs(degrees: Tensor) -> list[tuple[int, int]]:
    """Pairs ``(a, b)`` of units with equal ``degrees`` (``(width,)``), consecutive within
    each degree; a MADE's masks treat both units of a pair alike, so the copy keeps them."""
    by_degree: dict[int, list[int]] = {}
    for unit, degree in enumerate(degrees.tolist()):
        by_degree.setdefault(degree, []).append(unit)
    return [
        (units[i], units[i + 1])
        for units in by_degree.values()
        for i in range(0, len(units) - 1, 2)
    ]


@torch.no_grad()
def antisymmetric_start(
    last: nn.Linear, writers: Sequence[nn.Linear], pairs: Sequence[tuple[int, int]]
) -> None:
    """Makes ``last`` output exactly 0 at the start with live gradients (module docstring).

    Arguments:
        last: the output layer; its columns index the last hidden units.
        writers: every layer whose outputs are (or are added to) the last hidden units, in any
            order: the last hidden layer, and in a residual stream every layer that writes it.
            Each gets row ``b`` (weight and bias) copied from row ``a``.
        pairs: the unit pairs ``(a, b)``, e.g. from :func:`unit_pairs`.
    """
    partner = torch.zeros(last.in_features, dtype=torch.bool)
    for a, b in pairs:
        for layer in writers:
            layer.weight[b] = layer.weight[a]
            if layer.bias is not None:
                layer.bias[b] = layer.bias[a]
        last.weight[:, b] = -last.weight[:, a]
        partner[a] = partner[b] = True
    last.weight[:, ~partner] = 0
    if last.bias is not None:
        last.bias.zero_()
