r"""The training objective as a strategy: what one step minimises and how a model is scored.

The trainer (:mod:`flowforge.train.trainer`) knows nothing of likelihoods, bounds or targets.
It asks an :class:`Objective` for

- the model to build: :meth:`~Objective.model_inputs` (event shape, context size, class count),
  so a checkpoint can rebuild the model without the data;
- data-dependent starts that need whole splits, :meth:`~Objective.start` (optional);
- each step's inputs :meth:`~Objective.batch` (a pure function of the seed and the step plus
  torch's random state, which checkpoints keep: that is what makes resume bit-identical), a
  module :meth:`~Objective.training_module` that maps them to per-example terms (the trainer
  may compile it, or wrap it in ``DistributedDataParallel`` when :attr:`~Objective.
  data_parallel`), and :meth:`~Objective.loss`, the scalar to minimise;
- optionally, steps of its own before each of the trainer's, with optimisers it owns
  (:meth:`~Objective.own_steps`, as Lightning's manual optimisation: a GAN's critic
  updates); a step that cannot be taken raises :class:`StepFailed`, which the trainer counts
  as a bad step under that name (and rolls back after ``train.max_bad_steps`` of them);
  :attr:`~Objective.own_steps_name` says what they are, and ``train.compile`` is refused for
  such an objective;
- :meth:`~Objective.validate` (lower is better: it picks ``best.pt``) and
  :meth:`~Objective.evaluate`, the test results of the summary and of ``flowforge eval``: an
  :class:`~flowforge.objectives.results.Evaluation` that :meth:`~Objective.results` builds
  from the flat numbers of :meth:`~Objective.scores` (its headline measure with standard
  error, unit and kind, the NLL where there is one, the other measures);
- which figures a finished run draws (:attr:`~Objective.figures`).

Adding an objective is one file in this package with a subclass and its registration in
:data:`flowforge.objectives.OBJECTIVES`; its keyword options become the config's
``objective:`` section, validated against the constructor's signature. The CLI, the report,
``flowforge compare`` and the playground read only its :class:`~flowforge.objectives.results.
Evaluation`, so nothing else needs to know it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowforge.data.binarized_mnist import binarize
from flowforge.data.registry import Splits
from flowforge.objectives.results import Evaluation

__all__ = [
    "Objective",
    "ObjectiveError",
    "Setting",
    "StepFailed",
    "anneal_beta",
    "batch_generator",
    "batch_indices",
    "eval_mode",
    "evaluation_rng",
    "tensor_fingerprint",
]


class ObjectiveError(ValueError):
    """An objective that cannot work with the given data, model or options."""


class StepFailed(RuntimeError):
    """One of an objective's own steps (:meth:`Objective.own_steps`) could not be taken
    (e.g. a non-finite critic loss); the message names it. The trainer counts the step as bad
    under that name."""


@dataclass
class Setting:
    """What every objective gets from the run.

    Attributes:
        seed: the run's seed (batches depend only on it and the step).
        batch_size: examples (or samples) per training step.
        eval_batch_size: examples per evaluation pass.
        device: where the model lives.
        data: the data set's splits, for objectives that read data (else ``None``).
        load_model: opens another run's model by directory (distillation's teacher); given by
            the runs layer, which objectives may not import.
        steps: the run's ``train.steps``, for objectives whose schedule is laid over them (the
            JKO scheme's blocks); ``None`` where no run is configured.
    """

    seed: int
    batch_size: int
    eval_batch_size: int
    device: torch.device
    data: Splits | None = None
    load_model: Callable[[str], nn.Module] | None = None
    steps: int | None = None


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> Tensor:
    """Indices of the batch at ``step``: epoch-wise permutations drawn from ``(seed, epoch)``."""
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[i * batch_size : (i + 1) * batch_size]


def batch_generator(seed: int, step: int, stream: str = "batch") -> torch.Generator:
    """The generator of what the data set draws afresh for the batch at ``step`` (new
    inpainting masks, ``Splits.train_context_sampler``; ``stream="noise"``: the input noise of
    maximum likelihood): seeded from ``(stream, seed, step)`` alone, through SHA-256, so a
    resumed run and every torchrun rank draw the same numbers, and its stream is unrelated to
    the batch order's (:func:`batch_indices`) and to torch's global one."""
    digest = hashlib.sha256(f"{stream} {seed} {step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def anneal_beta(step: int, start: float = 0.01, length: int = 10000) -> float:
    r"""The inverse temperature :math:`\beta_t = \min(1, \beta_0 + t / \mathrm{length})` of
    Rezende and Mohamed (2015, https://arxiv.org/abs/1505.05770), also the KL warm-up of
    Sønderby et al. (2016, https://arxiv.org/abs/1602.02282)."""
    if length < 1:
        raise ValueError(f"'length' should be positive, got {length}")
    return min(1.0, start + step / length)


@contextmanager
def evaluation_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Fixed random numbers inside the block (common random numbers, so evaluations at
    different steps compare the model, not the noise); the training stream is restored after
    it, so evaluating never changes what training draws next."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block, in its previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def tensor_fingerprint(*tensors: Tensor | None) -> str:
    """SHA-256 of the tensors' bytes (``None`` counts as empty): a check that a resumed run
    reads the data it started with."""
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Objective(ABC):
    """A training objective (see the module docstring for the protocol).

    Class attributes:
        name: the config's ``objective.name``.
        metric: the validation metric's name (``val_<metric>`` in metrics records), lower is
            better.
        uses_data: whether the run reads a data set (``data:`` section).
        data_parallel: whether the training inputs are per-example tensors that can be split
            over torchrun processes.
        model_type: the kind of model the objective trains.
        train_key: the metrics record's name for the mean training loss.
        own_steps_name: what :meth:`own_steps` does (``"critic updates"``), empty when the
            objective takes no steps of its own.
        figures: which figures a finished run draws (:mod:`flowforge.runs.figures`):
            ``"data"``, the model beside the data set; ``"target"``, the fitted q beside
            :attr:`target` (and :meth:`reference`'s samples).
    """

    name: ClassVar[str]
    metric: ClassVar[str]
    uses_data: ClassVar[bool] = True
    data_parallel: ClassVar[bool] = False
    model_type: ClassVar[type[nn.Module]] = nn.Module
    train_key: ClassVar[str] = "train_loss"
    own_steps_name: ClassVar[str] = ""
    figures: ClassVar[str] = "data"

    def __init__(self, setting: Setting) -> None:
        if self.uses_data and setting.data is None:
            raise ObjectiveError(f"objective {self.name!r} needs a data set")
        self.setting = setting

    @property
    def data(self) -> Splits:
        assert self.setting.data is not None  # checked in __init__
        return self.setting.data

    # -- the data ----------------------------------------------------------------------------
    def train_rows(self, step: int) -> Tensor:
        """The training examples of batch ``step`` (epoch-wise permutations of the seed),
        binarized afresh when the data set asks for it (torch's generator, whose state every
        checkpoint keeps); on the CPU."""
        s, st = self.data, self.setting
        x = s.train[batch_indices(s.train.shape[0], st.batch_size, st.seed, step)]
        return binarize(x) if s.binarize_train else x

    def split_rows(self, split: str) -> Tensor:
        """The examples of ``split`` as every evaluation sees them: a training split that is
        binarized per batch is binarized here from fixed random numbers."""
        x = getattr(self.data, split)
        if split == "train" and self.data.binarize_train:
            with evaluation_rng(self.setting.seed, self.setting.device):
                x = binarize(x)
        return x

    # -- the model ---------------------------------------------------------------------------
    @abstractmethod
    def model_inputs(self) -> dict[str, Any]:
        """``{"event_shape": [...], "context_features": int, "context_classes": int}``: what
        the model is built for, stored in checkpoints."""

    def check_model(self, model: nn.Module) -> None:
        """Refuses a model of the wrong kind for this objective."""
        if not isinstance(model, self.model_type):
            raise ObjectiveError(
                f"objective {self.name!r} trains a {self.model_type.__name__}, "
                f"not a {type(model).__name__}"
            )

    # -- training ----------------------------------------------------------------------------
    def start(self, model: nn.Module) -> str | None:
        """Data-dependent starts that need whole splits, run once before the first step of a
        new run (after batch 0 has gone through the model, with ``train.eval_at_start``);
        returns a line saying what was chosen, or ``None``. None by default."""
        return None

    @abstractmethod
    def batch(self, step: int) -> tuple[Tensor, ...]:
        """The inputs of the training module at ``step`` (on the model's device)."""

    @abstractmethod
    def training_module(self, model: nn.Module) -> nn.Module:
        """A module whose ``forward(*batch)`` returns the step's loss terms."""

    @abstractmethod
    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        """The scalar to minimise from the training module's output."""

    def own_steps(self, model: nn.Module, batch: tuple[Tensor, ...], step: int) -> None:
        """The objective's own steps before the trainer's at ``step``, on the step's inputs
        ``batch``, with optimisers the objective owns (their state in :meth:`state_dict`);
        raises :class:`StepFailed` naming what failed. None by default; an objective that
        takes some names them in :attr:`own_steps_name`."""
        return None

    def fingerprint(self) -> dict[str, str]:
        """Facts a resumed run must share with its checkpoint (e.g. the data's hash)."""
        return {}

    def parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """The parameters the trainer's optimiser updates (all of the model's by default; an
        adversarial objective updates its critic itself and returns the generator's)."""
        return model.parameters()

    def state_dict(self) -> dict[str, Any]:
        """State of the objective's own that a resume needs (e.g. a critic's optimiser, an
        RBM's persistent chains); saved in every training checkpoint."""
        return {}

    def state_template(self) -> dict[str, Any]:
        """What each key of :meth:`state_dict` is loaded into, for the check every checkpoint's
        objective state passes before :meth:`load_state_dict` sees it
        (:func:`flowforge.train.checkpoint.check_state`): an optimiser (its saved state dict
        is checked against its parameter groups), a tensor (the saved one must have its
        shape, dtype and device, and be finite), a number or a mapping of these. By default
        the current :meth:`state_dict`, so state that exists from the start is checked
        without a line of the objective's own; an objective whose state appears later (PCD's
        chains) or that owns an optimiser names it here."""
        return self.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` (already checked against :meth:`state_template` by the
        trainer); a state of another shape is a ``ValueError``."""
        if state:
            raise ValueError(f"objective {self.name!r} keeps no state, got {sorted(state)}")

    # -- scores ------------------------------------------------------------------------------
    @abstractmethod
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation numbers; must hold ``val_<metric>`` (lower is better) and
        ``val_stderr``."""

    @abstractmethod
    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """The flat test numbers on ``split`` (``<split>_nll``, ``<split>_mmd``, ...), by the
        keys the summary stores them under."""

    @classmethod
    @abstractmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The typed evaluation of :meth:`scores`'s ``numbers``: the headline measure, the
        NLL where there is one, the other measures (also applied to summaries written before
        the ``headline`` block, :func:`~flowforge.objectives.results.read_evaluation`)."""

    def evaluate(self, model: nn.Module, split: str = "test") -> Evaluation:
        """The results of the summary and of ``flowforge eval`` on ``split``."""
        return self.results(self.scores(model, split), split)

    def reference(self) -> nn.Module | None:
        """A model whose samples the figures show beside the trained one's (distillation's
        teacher); ``None`` by default."""
        return None

    def check_split(self, split: str) -> None:
        """Data objectives evaluate any split; the others only their own samples."""
        splits = ("train", "val", "test") if self.uses_data else ("test",)
        if split not in splits:
            raise ObjectiveError(
                f"objective {self.name!r} evaluates {', '.join(splits)}, not {split!r}"
            )
