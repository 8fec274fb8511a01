r"""The JKO scheme: a flow's blocks trained one after another, each a step of the Wasserstein
gradient flow of the KL divergence to the base.

Jordan, Kinderlehrer and Otto (1998) discretise the gradient flow of a functional
:math:`F(\rho)` in the 2-Wasserstein metric with step size :math:`h` as

.. math:: \rho_{k+1} = \arg\min_\rho\; F(\rho) + \frac{1}{2h} W_2^2(\rho, \rho_k).

JKO-iFlow (Xu, Cheng and Xie 2023, https://arxiv.org/abs/2212.14424) takes
:math:`F(\rho) = \mathrm{KL}(\rho \,\|\, \mathcal N(0, I))` and parametrises each step by a
block :math:`T_k` of the flow, :math:`\rho_{k+1} = T_{k\#}\rho_k`, so that, with
:math:`x_k` the data pushed through the frozen blocks :math:`1..k-1`, block :math:`k`
minimises (up to the constant entropy of :math:`\rho_k`)

.. math:: \mathcal L_k = \mathbb E\Big[-\log p_Z(T_k(x_k))
    - \log\Big|\det \frac{\partial T_k}{\partial x}(x_k)\Big|\Big]
    + \frac{1}{2h_k}\, \mathbb E\, \|T_k(x_k) - x_k\|^2 ,

the movement penalty being the squared displacement of the map (it bounds
:math:`W_2^2(\rho_k, \rho_{k+1})` from above, and is the official code's penalty). The first
two terms are, up to the frozen blocks' log-determinants, the NLL of the flow cut after block
:math:`k` (the last block's: the whole flow's); the third keeps each block close to the
optimal transport step, so the whole map :math:`x \mapsto z` moves mass little
(``test_transport``, :func:`transport_cost`).

The blocks are a flow's trainable transforms in order (nested
:class:`~flowforge.transforms.Compose` flattened): the CNFs of ``ffjord(blocks=K)`` as in
JKO-iFlow (each a short-time CNF), or the residual blocks of ``iresnet``/``resflow``, or
couplings. Fixed transforms in front of the first block (a standardisation) are applied to the
data first. Block :math:`k`
trains during steps :math:`[kN, (k+1)N)` of the one trainer; the others get no gradient
(their parameters are left alone by the optimiser), the earlier ones run without one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowforge.flows import Flow
from flowforge.objectives.base import ObjectiveError, Setting, eval_mode, evaluation_rng
from flowforge.objectives.mle import MaximumLikelihood
from flowforge.objectives.results import Evaluation, Measure
from flowforge.transforms import Compose, Transform
from flowforge.transforms.continuous import regularization

__all__ = ["JKO", "JKOStep", "jko_blocks", "transport_cost"]


def _leaves(t: Transform) -> list[Transform]:
    if isinstance(t, Compose):
        return [leaf for part in t.transforms for leaf in _leaves(part)]  # type: ignore[arg-type]
    return [t]


def _trainable(t: nn.Module) -> bool:
    return any(p.requires_grad for p in t.parameters())


def jko_blocks(flow: Flow) -> tuple[list[Transform], list[Transform]]:
    """``(front, blocks)``: the fixed transforms in front of the first trainable one, and the
    trainable transforms (the JKO steps) in order. A ``ValueError`` when there is no block,
    when a fixed transform sits between blocks (it would belong to no step) or when the base
    has trainable parameters (the scheme's target is fixed)."""
    leaves = _leaves(flow.transform)
    first = next((i for i, t in enumerate(leaves) if _trainable(t)), None)
    if first is None:
        raise ValueError("the flow has no trainable transform to take JKO steps with")
    fixed = [type(t).__name__ for t in leaves[first:] if not _trainable(t)]
    if fixed:
        raise ValueError(
            f"fixed transforms between the blocks ({', '.join(fixed)}) belong to no JKO "
            f"step; only a fixed front (a standardisation) may precede the blocks"
        )
    if _trainable(flow.base):
        raise ValueError(
            f"the base ({type(flow.base).__name__}) has trainable parameters; the JKO scheme "
            f"pushes the data to a fixed base"
        )
    return leaves[:first], leaves[first:]


class JKOStep(nn.Module):
    """``forward(x, block)``: the per-example terms of JKO step ``block`` (a 0-d integer
    tensor), ``(B, 3)``: :math:`-\\log p_Z(T_k(x_k))`, :math:`-\\log|\\det J_{T_k}(x_k)|` and
    :math:`\\|T_k(x_k) - x_k\\|^2`, with :math:`x_k` the rows pushed through the front and the
    earlier blocks without gradients."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow
        front, blocks = jko_blocks(flow)
        self._front, self._blocks = front, blocks  # the flow's own modules, not copies

    def forward(self, x: Tensor, block: Tensor) -> Tensor:
        k = int(block)
        if not 0 <= k < len(self._blocks):
            raise ValueError(f"JKO step {k} of a flow with {len(self._blocks)} blocks")
        with torch.no_grad():
            for t in (*self._front, *self._blocks[:k]):
                x, _ = t(x)
        z, ladj = self._blocks[k](x)
        return torch.stack([-self.flow.base.log_prob(z), -ladj, (z - x).pow(2).sum(1)], 1)


def transport_cost(flow: Flow, x: Tensor, batch_size: int = 4096) -> Tensor:
    """:math:`\\|T(x) - x\\|^2` of each row of ``x`` under the flow's whole map to its latent
    space, a float64 ``(n,)`` CPU tensor (eval mode; the data's units squared). Its mean is
    the transport cost of the learned map, an upper bound of
    :math:`W_2^2(p_{\\mathrm{data}}, T_\\# p_{\\mathrm{data}})`."""
    device = next((b.device for b in flow.buffers()), torch.device("cpu"))
    out = []
    with torch.no_grad(), eval_mode(flow):
        for i in range(0, x.shape[0], batch_size):
            rows = x[i : i + batch_size].to(device)
            z = flow.transform_to_latent(rows)
            out.append((z - rows).pow(2).sum(1).double().cpu())
    return torch.cat(out)


class JKO(MaximumLikelihood):
    """The JKO scheme (``objective: {name: jko, step_size: h, steps_per_block: N}``).

    Options:
        step_size: the step :math:`h` of the first block (JKO-iFlow's 2-D configs start at
            0.25); larger steps move further towards the base per block.
        steps_per_block: training steps of each block: block :math:`k` trains during steps
            :math:`[kN, (k+1)N)`, so ``train.steps`` must be ``N`` times the flow's blocks.
        step_growth: :math:`h_k = h\\,\\rho^k` (JKO-iFlow's schedules grow by about 1.4 per
            block: later steps, nearer the base, can afford to move further); 1: a constant
            step.
        yardstick, yardstick_seconds: as ``mle``'s.

    Validation and test numbers are ``mle``'s (the whole flow's exact NLL, the gap to the
    true entropy where known), plus the transport cost of the learned map
    (``<split>_transport``, :func:`transport_cost`) and each block's share
    (``<split>_block_transport``, the mean squared displacement of each step).
    """

    name = "jko"
    data_parallel = False
    train_key = "train_loss"

    def __init__(
        self,
        setting: Setting,
        step_size: float,
        steps_per_block: int,
        step_growth: float = 1.0,
        yardstick: str = "auto",
        yardstick_seconds: float = 300.0,
    ) -> None:
        super().__init__(setting, yardstick, yardstick_seconds)
        if not (isinstance(step_size, int | float) and 0 < step_size < math.inf):
            raise ObjectiveError(f"step_size: should be positive and finite, got {step_size!r}")
        if isinstance(steps_per_block, bool) or not (
            isinstance(steps_per_block, int) and steps_per_block >= 1
        ):
            raise ObjectiveError(
                f"steps_per_block: should be a positive integer, got {steps_per_block!r}"
            )
        if not (isinstance(step_growth, int | float) and 0 < step_growth < math.inf):
            raise ObjectiveError(f"step_growth: should be positive and finite, got {step_growth!r}")
        if self.data.train_context is not None:
            raise ObjectiveError(
                "the JKO scheme fits an unconditional density; this data set has a context"
            )
        self.step_size, self.step_growth = float(step_size), float(step_growth)
        self.steps_per_block = steps_per_block

    def check_model(self, model: nn.Module) -> None:
        """A flow with blocks (:func:`jko_blocks`) whose schedule fills ``train.steps``."""
        super().check_model(model)
        assert isinstance(model, Flow)
        try:
            _, blocks = jko_blocks(model)
        except ValueError as e:
            raise ObjectiveError(f"objective 'jko': {e}") from None
        steps, n = self.setting.steps, self.steps_per_block
        if steps is not None and steps != n * len(blocks):
            raise ObjectiveError(
                f"the flow has {len(blocks)} JKO blocks of {n} steps each "
                f"(objective.steps_per_block): set train.steps to {n * len(blocks)}, "
                f"not {steps}"
            )

    def block_step_size(self, block: int) -> float:
        """:math:`h_k = h \\rho^k`."""
        return self.step_size * self.step_growth**block

    def batch(self, step: int) -> tuple[Tensor, ...]:
        """The step's rows and the block it trains, ``step // steps_per_block``."""
        x = self.train_rows(step).to(self.setting.device)
        return x, torch.tensor(step // self.steps_per_block)

    def training_module(self, model: nn.Module) -> nn.Module:
        return JKOStep(model)  # type: ignore[arg-type]

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        """:math:`\\mathcal L_k` of the module docstring, plus the RNODE penalty of a CNF
        block configured with one."""
        h = self.block_step_size(step // self.steps_per_block)
        nll, neg_logdet, moved = terms.unbind(1)
        loss = (nll + neg_logdet).mean() + moved.mean() / (2 * h)
        penalty = regularization(model)
        return loss if penalty is None else loss + penalty

    def fingerprint(self) -> dict[str, str]:
        schedule = (
            f"h={self.step_size!r}, growth={self.step_growth!r}, "
            f"steps_per_block={self.steps_per_block}"
        )
        return {**super().fingerprint(), "jko_schedule": schedule}

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``mle``'s numbers, ``<split>_transport`` (with ``_stderr``) and
        ``<split>_block_transport`` (one mean per block)."""
        out = super().scores(model, split)
        assert isinstance(model, Flow)
        x = self.split_rows(split)
        with evaluation_rng(self.setting.seed, self.setting.device):
            cost = transport_cost(model, x, self.setting.eval_batch_size)
            moved = _block_displacements(model, x, self.setting.eval_batch_size)
        out.update(
            {
                f"{split}_transport": cost.mean().item(),
                f"{split}_transport_stderr": (cost.std() / math.sqrt(cost.numel())).item(),
                f"{split}_block_transport": moved,
            }
        )
        return out

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """``mle``'s results and the transport cost of the learned map."""
        base = super().results(numbers, split)
        if f"{split}_transport" not in numbers:
            return base
        cost = Measure(
            f"{split} transport cost E|T(x)-x|^2",
            numbers[f"{split}_transport"],
            numbers[f"{split}_transport_stderr"],
            "",
            "exact",
        )
        return Evaluation(base.headline, base.nll, (*base.measures, cost), base.numbers)


def _block_displacements(flow: Flow, x: Tensor, batch_size: int) -> list[float]:
    """The mean :math:`\\|T_k(x_k) - x_k\\|^2` of each block over the rows of ``x``."""
    front, blocks = jko_blocks(flow)
    device = next((b.device for b in flow.buffers()), torch.device("cpu"))
    sums = [0.0] * len(blocks)
    with torch.no_grad(), eval_mode(flow):
        for i in range(0, x.shape[0], batch_size):
            rows = x[i : i + batch_size].to(device)
            for t in front:
                rows, _ = t(rows)
            for k, t in enumerate(blocks):
                moved, _ = t(rows)
                sums[k] += float((moved - rows).pow(2).sum().double())
                rows = moved
    return [s / x.shape[0] for s in sums]
