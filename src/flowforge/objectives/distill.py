r"""Probability density distillation: a student that is cheap to sample learns a teacher that
is cheap to evaluate.

The student :math:`q` (an IAF, affine or spline) minimises the reverse KL to the frozen
teacher :math:`p` (e.g. a MAF trained by maximum likelihood) on its own reparameterised
samples,

.. math:: \mathrm{KL}(q \| p) = \mathbb{E}_{x \sim q}[\log q(x) - \log p(x)],

the teacher's parameters getting no gradient while the samples' gradient flows through its
density (van den Oord et al. 2018, https://arxiv.org/abs/1711.10433). The teacher is another
run's directory; since it is normalised (:math:`\log Z = 0`) the loss is the KL itself.
The test numbers add the other direction, :math:`\mathrm{KL}(p \| q)` on teacher samples.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from flowforge.flows import Flow
from flowforge.objectives.base import (
    ObjectiveError,
    Setting,
    eval_mode,
    evaluation_rng,
    tensor_fingerprint,
)
from flowforge.objectives.results import Evaluation, Measure
from flowforge.objectives.reverse_kl import ReverseKL
from flowforge.targets import Target

__all__ = ["Distillation"]


class Distillation(ReverseKL):
    """Distils the flow of the run directory ``teacher`` into the configured student.

    Arguments:
        setting: from the run (``batch_size`` student samples per step).
        teacher: the teacher's run directory (its ``best.pt``).
        anneal: annealing length in steps (0: off).
        val_samples, eval_samples: samples of the validation and the final estimates.
    """

    name = "distill"
    metric = "kl"

    def __init__(
        self,
        setting: Setting,
        teacher: str = "",
        anneal: int = 0,
        val_samples: int = 2000,
        eval_samples: int = 20000,
    ) -> None:
        if not teacher:
            raise ObjectiveError("objective.teacher: give the teacher's run directory")
        if setting.load_model is None:
            raise ObjectiveError("objective 'distill' needs a way to open the teacher's run")
        self.teacher_dir = teacher
        self.teacher = setting.load_model(teacher)
        if not isinstance(self.teacher, Flow):
            raise ObjectiveError(f"objective.teacher: {teacher} is not a flow's run")
        self.teacher.to(setting.device).eval().requires_grad_(False)
        super().__init__(setting, teacher, anneal, val_samples, eval_samples)

    def make_target(self, name: str) -> Target:
        teacher = self.teacher
        dim = int(teacher.event_shape.numel())
        if len(teacher.event_shape) != 1:
            raise ObjectiveError(
                f"objective.teacher: distillation takes a flow over vectors, got event shape "
                f"{tuple(teacher.event_shape)}"
            )
        dtype = next(teacher.parameters()).dtype
        return Target(f"teacher {name}", lambda x: teacher.log_prob(x.to(dtype)), dim, 0.0)

    def fingerprint(self) -> dict[str, str]:
        """A hash of the teacher's parameters and buffers: a resumed student must learn the
        same teacher."""
        return {"teacher": tensor_fingerprint(*self.teacher.state_dict().values())}

    def reference(self) -> nn.Module:
        """The teacher, whose samples the figures show beside the student's."""
        return self.teacher

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """Reverse KL's, and the forward ``KL(teacher || student)`` beside it."""
        out = super().results(numbers, split)
        forward = Measure(
            "KL(teacher || student)",
            numbers["kl_teacher_student"],
            numbers["kl_teacher_student_stderr"],
            "nats",
            "estimate",
            f"{numbers.get('eval_samples')} teacher samples",
        )
        return replace(out, measures=(*out.measures, forward))

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """The reverse KL (the loss), and ``kl_teacher_student``, ``KL(p || q)`` on
        ``eval_samples`` teacher samples (each with its standard error)."""
        out = super().scores(model, split)
        n = self.eval_samples
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            with torch.no_grad():
                x = self.teacher.sample(n)  # type: ignore[operator]
                gap = (self.teacher.log_prob(x) - model.log_prob(x)).double()  # type: ignore[operator]
        out.update(
            teacher=self.teacher_dir,
            kl_teacher_student=float(gap.mean()),
            kl_teacher_student_stderr=float(gap.std() / math.sqrt(n)),
        )
        return out
