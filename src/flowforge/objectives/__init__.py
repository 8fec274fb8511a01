"""Training objectives, one file each: what a step minimises and how a model is scored.

:data:`OBJECTIVES` maps the config's ``objective.name`` to its class (see
:class:`~flowforge.objectives.base.Objective` for the protocol every one follows):

- ``mle``: exact maximum likelihood of a flow on data (:mod:`.mle`);
- ``elbo``, ``iwae``: variational bounds of a VAE with any posterior flow (:mod:`.elbo`);
- ``reverse_kl``: a flow fitted to an unnormalised target (:mod:`.reverse_kl`);
- ``distill``: a student flow fitted to a teacher run (:mod:`.distill`);
- ``gan``, ``wgan``, ``wgan_gp``: adversarial baselines, the trainer updating the generator and
  the objective the critic in its own steps (:mod:`.gan`);
- ``cd``: an RBM by contrastive divergence (CD-k, PCD), tested by AIS (:mod:`.rbm`);
- ``dbm``: a deep Boltzmann machine, tested by AIS and its mean-field bound (:mod:`.dbm`);
- ``likelihood``: exact maximum likelihood of a non-flow model such as NADE (:mod:`.likelihood`);
- ``jko``: a flow's blocks trained one after another as steps of the JKO scheme, the
  Wasserstein gradient flow of the KL divergence to the base (:mod:`.jko`).
"""

from __future__ import annotations

import inspect

from flowforge.objectives.base import Objective, ObjectiveError, Setting, StepFailed
from flowforge.objectives.dbm import DeepBoltzmann
from flowforge.objectives.distill import Distillation
from flowforge.objectives.elbo import ELBO, IWAE
from flowforge.objectives.gan import WGAN, WGANGP, GANObjective
from flowforge.objectives.jko import JKO
from flowforge.objectives.likelihood import ExactLikelihood
from flowforge.objectives.mle import MaximumLikelihood
from flowforge.objectives.rbm import ContrastiveDivergence
from flowforge.objectives.results import Evaluation, Measure, read_evaluation
from flowforge.objectives.reverse_kl import ReverseKL

__all__ = [
    "OBJECTIVES",
    "Evaluation",
    "Measure",
    "Objective",
    "ObjectiveError",
    "Setting",
    "StepFailed",
    "objective_options",
    "read_evaluation",
]

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (MaximumLikelihood, ELBO, IWAE, ReverseKL, Distillation, JKO)
}
# the baselines of docs/comparison.md
OBJECTIVES.update(
    {cls.name: cls for cls in (GANObjective, WGAN, WGANGP, ContrastiveDivergence, ExactLikelihood)}
)
OBJECTIVES[DeepBoltzmann.name] = DeepBoltzmann


def objective_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options of objective ``name`` (its constructor's, beyond the setting)."""
    params = inspect.signature(OBJECTIVES[name].__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", "setting")}
