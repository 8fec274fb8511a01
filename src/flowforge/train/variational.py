r"""Fitting a flow to an unnormalised target by reverse KL (variational inference).

:func:`fit_target` trains ``q`` (any :class:`~flowforge.flows.Flow` whose sampling direction is
cheap: planar, radial, IAF, RealNVP, ...) on :func:`~flowforge.train.objectives.reverse_kl` and
reports

.. math:: \mathrm{KL}(q \| p) = \mathbb{E}_q[\log q - \log \tilde p] + \log Z

with the target's ``log Z`` (exact or from grid integration) on fresh samples, with its
Monte-Carlo standard error. Adam with a cosine learning-rate decay; optional annealing of the
target (Rezende and Mohamed 2015, https://arxiv.org/abs/1505.05770).

:func:`distill` is the same loop with a trained flow as the (normalised, ``log Z = 0``) target:
probability density distillation of a teacher that is cheap to evaluate (MAF) into a student
that is cheap to sample (IAF), :math:`\mathrm{KL}(q \| p) = \mathbb{E}_q[\log q - \log p]` on
student samples (van den Oord et al. 2018, https://arxiv.org/abs/1711.10433).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from flowforge.flows import Flow
from flowforge.targets import Target
from flowforge.train.objectives import anneal_beta, reverse_kl

__all__ = ["FitResult", "distill", "estimate_kl", "fit_target"]


@dataclass
class FitResult:
    """The outcome of :func:`fit_target`.

    Attributes:
        loss: final ``E_q[log q - log p~]`` (the negative ELBO) on fresh samples.
        loss_stderr: its Monte-Carlo standard error.
        kl: ``loss + log Z`` when the target's ``log Z`` is known, else ``None``.
        steps: optimisation steps taken; skipped: steps skipped for a non-finite loss.
        seconds: wall-clock training time.
        history: ``{"step", "loss", "beta"}`` records every ``log_every`` steps.
    """

    loss: float
    loss_stderr: float
    kl: float | None
    steps: int
    skipped: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _as_target(target: Target | Callable[[Tensor], Tensor], flow: Flow) -> Target:
    if isinstance(target, Target):
        if tuple(flow.event_shape) != (target.dim,):
            raise ValueError(
                f"the flow's event shape {tuple(flow.event_shape)} does not match "
                f"the target's dimension {target.dim}"
            )
        return target
    if not callable(target):
        raise ValueError(f"'target' should be a Target or a function log_p(z), got {target!r}")
    return Target("log_p", target, int(flow.event_shape.numel()))


@torch.no_grad()
def estimate_kl(
    flow: Flow, target: Target, n: int = 20000, chunk: int = 10000
) -> tuple[float, float, float | None]:
    """``(loss, stderr, kl)``: ``E_q[log q - log p~]`` on ``n`` samples, its standard error,
    and ``loss + log Z`` (``None`` when ``log Z`` is unknown)."""
    if n < 2:
        raise ValueError(f"'n' should be at least 2, got {n}")
    gaps = []
    for m in [chunk] * (n // chunk) + ([n % chunk] if n % chunk else []):
        x, log_q = flow.sample_and_log_prob(m)
        gaps.append(log_q - target(x))
    d = torch.cat(gaps).double()
    loss, stderr = float(d.mean()), float(d.std() / math.sqrt(n))
    return loss, stderr, None if target.log_z is None else loss + target.log_z


def fit_target(
    flow: Flow,
    target: Target | Callable[[Tensor], Tensor],
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    anneal: bool = False,
    anneal_length: int = 10000,
    eval_samples: int = 20000,
    log_every: int = 500,
    seed: int | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    r"""Fits ``flow`` to ``target`` by minimising the reverse KL; returns a :class:`FitResult`.

    Arguments:
        flow: the variational distribution (trained in place).
        target: a :class:`~flowforge.targets.Target` or any function ``log_p(z) -> (batch,)``.
        steps: number of Adam steps.
        batch_size: samples per step.
        lr: initial learning rate (cosine decay to 0 over ``steps``).
        anneal: scale the target's log-density by ``beta_t = min(1, 0.01 + t / anneal_length)``.
        anneal_length: the annealing length (the paper: 10000).
        eval_samples: samples of the final KL estimate.
        log_every: interval of the history records.
        seed: seeds torch's generator first, when given.
        progress: called with each history record.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
        if value < 1:
            raise ValueError(f"'{name}' should be positive, got {value}")
    if not lr > 0:
        raise ValueError(f"'lr' should be positive, got {lr}")
    target = _as_target(target, flow)
    if seed is not None:
        torch.manual_seed(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history: list[dict[str, float]] = []
    skipped, start = 0, time.perf_counter()
    flow.train()
    for step in range(steps):
        beta = anneal_beta(step, length=anneal_length) if anneal else 1.0
        loss = reverse_kl(flow, target, batch_size, beta)
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        else:
            skipped += 1
        schedule.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            record = {"step": step + 1, "loss": float(loss.detach()), "beta": beta}
            history.append(record)
            if progress is not None:
                progress(record)
    seconds = time.perf_counter() - start
    flow.eval()
    loss_value, stderr, kl = estimate_kl(flow, target, eval_samples)
    return FitResult(loss_value, stderr, kl, steps, skipped, seconds, history)


def distill(student: Flow, teacher: Flow, steps: int, **options: object) -> FitResult:
    """Trains ``student`` to minimise ``KL(student || teacher)`` on its own samples; the
    teacher is frozen (its parameters get no gradient, the samples' gradient flows through its
    density) and in eval mode. ``options`` go to :func:`fit_target`; the result's ``kl`` is the
    final ``KL(q || p)`` (``log Z = 0``).
    """
    if tuple(student.event_shape) != tuple(teacher.event_shape):
        raise ValueError(
            f"the student's event shape {tuple(student.event_shape)} differs from the "
            f"teacher's {tuple(teacher.event_shape)}"
        )
    teacher.eval().requires_grad_(False)
    target = Target("teacher", lambda x: teacher.log_prob(x), int(teacher.event_shape.numel()), 0.0)
    return fit_target(student, target, steps, **options)  # type: ignore[arg-type]
