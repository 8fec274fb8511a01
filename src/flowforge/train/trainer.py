"""The one trainer: steps, schedules, rollback, averaging, time budget, DDP, resume.

:class:`Trainer` runs any :class:`~flowforge.objectives.Objective` (maximum likelihood, VAE
bounds, reverse KL, distillation) the same way:

- every step draws the objective's inputs (a function of the seed, the step and torch's random
  state), computes its loss through the objective's training module (compiled as
  ``train.compile`` decides, :mod:`flowforge.train.compiling`; wrapped in
  ``DistributedDataParallel`` under torchrun) and takes a step of
  ``train.optimizer`` (fused AdamW by default; :func:`make_optimizer`) with the scheduled
  learning rate and gradient clipping;
- the objective's own steps come first (:meth:`~flowforge.objectives.Objective.own_steps`,
  e.g. a GAN's critic updates with the objective's optimiser); one that fails
  (:class:`~flowforge.objectives.StepFailed`) makes the step bad under its name;
- a non-finite loss or gradient skips the step; ``max_bad_steps`` in a row roll back to the last
  checkpoint with the learning rate halved again at each rollback, and after ``max_rollbacks``
  the run stops with :class:`TrainingDiverged`;
- every ``eval_every`` steps (and at the end, early stop or an exhausted ``max_seconds``) it
  validates (the averaged parameters with ``train.ema``), keeps ``best.pt``, appends a metrics
  record and writes ``last.pt``, the resume point;
- SIGINT/SIGTERM save ``last.pt`` and raise :class:`TrainingInterrupted` with the command
  that resumes;
- it computes with the threads :func:`~flowforge.train.threads.torch_threads` set for the run
  (``train.threads``), times its steps in windows and warns once when a window ran far slower
  than the fastest (:func:`~flowforge.train.threads.slow_steps`), and records in
  :attr:`Trainer.stopped` why the loop ended: ``"finished"`` (all ``train.steps``),
  ``"early_stop"`` (``train.patience``) or ``"time_budget"`` (``train.max_seconds``).

Where the files go is the run directory's business (:mod:`flowforge.runs`): the trainer
writes through the small :class:`RunFiles` interface.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from flowforge.config import ConfigError, RunConfig, TrainConfig
from flowforge.objectives import Objective, StepFailed
from flowforge.run_files import BEST, LAST
from flowforge.train.averaging import ParameterAverage
from flowforge.train.checkpoint import (
    CheckpointError,
    check_averaged_parameters,
    check_model_state,
    check_optimizer_kind,
    check_optimizer_state,
    check_state,
    load_checkpoint,
)
from flowforge.train.compiling import CompiledStep, Decision, decide
from flowforge.train.distributed import Group, needs_data_init
from flowforge.train.loggers import RunLogger
from flowforge.train.schedule import learning_rate, rank_seed, rng_state, set_rng_state
from flowforge.train.state import Progress, StateError
from flowforge.train.threads import StepPace
from flowforge.version import __version__

__all__ = ["RunFiles", "Trainer", "TrainingDiverged", "TrainingInterrupted", "make_optimizer"]


class TrainingDiverged(RuntimeError):
    """Training produced non-finite values and could not recover by rolling back."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved and the message says how to resume."""


class RunFiles(Protocol):
    """What the trainer writes to: implemented by :class:`flowforge.runs.RunDirectory`."""

    path: Path

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> Path: ...

    def checkpoint_path(self, name: str) -> Path: ...

    def append_metrics(self, record: dict[str, Any]) -> None: ...

    def truncate_metrics(self, step: int) -> None: ...


@contextmanager
def stop_signals() -> Iterator[list[str]]:
    """Records SIGINT/SIGTERM instead of dying mid-step; restores the handlers afterwards."""
    received: list[str] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield received
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def make_optimizer(
    train: TrainConfig, parameters: list[nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    """``train.optimizer`` over ``parameters`` with the configured hyperparameters (torch's
    defaults where unset). Adam and AdamW use the fused kernel on CPU and CUDA, which
    updates every parameter in one pass: 9-13 % off a MAF/RealNVP step."""
    common = {"lr": train.lr, "weight_decay": train.weight_decay}
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            parameters,
            **common,
            momentum=train.momentum if train.momentum is not None else 0.0,
            alpha=train.alpha if train.alpha is not None else 0.99,
        )
    adam = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[train.optimizer]
    return adam(
        parameters,
        **common,
        betas=tuple(train.betas) if train.betas is not None else (0.9, 0.999),
        fused=device.type in ("cpu", "cuda"),
    )


def _written_steps(payload: dict[str, Any], configured: int) -> int:
    """The ``train.steps`` of the run that wrote a checkpoint (its saved config's), which its
    ``step`` never passes; ``configured`` when the saved config does not say."""
    config = payload.get("config")
    train = config.get("train") if isinstance(config, dict) else None
    steps = train.get("steps") if isinstance(train, dict) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else configured


def _on_cpu(value: Any) -> Any:
    """A tensor (or a list of them) on the CPU; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, list):
        return [_on_cpu(v) for v in value]
    return value


def _rng_and_template(saved: Any) -> tuple[Any, dict[str, Any]]:
    """A saved random state (:func:`~flowforge.train.schedule.rng_state`) and what it is
    loaded into: this process's generator states. Saved CUDA states are left out where there
    is no GPU (:func:`~flowforge.train.schedule.set_rng_state` ignores them there); where
    there is, each saved one is checked against the device's of that index."""
    template = rng_state()
    if not isinstance(saved, dict):
        return saved, template
    # set from CPU tensors wherever map_location put them (set_rng_state)
    saved = {k: _on_cpu(v) for k, v in saved.items()}
    if "cuda" in saved and "cuda" not in template:
        saved = {k: v for k, v in saved.items() if k != "cuda"}
    elif isinstance(saved.get("cuda"), list) and len(saved["cuda"]) < len(template["cuda"]):
        template["cuda"] = template["cuda"][: len(saved["cuda"])]
    return saved, template


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> Tensor:
    """Clips the gradients to a total norm of ``max_norm`` (``inf``: no clipping) and returns
    their norm before clipping: one fused norm that also detects NaN and inf.

    A float32 norm can overflow while every entry is finite (entries above about ``1e19``:
    a far outlier that a deep affine flow stretches by up to :math:`e^{40}` has a loss
    gradient of that size). When clipping is on, that norm is computed again in float64 and
    the gradients are clipped with it, since the clipped step is still well defined; without
    clipping (``max_norm = inf``) the overflow is returned, since Adam's squared-gradient
    average would overflow on it. The norm is non-finite only then or when an entry is.
    """
    grads = [q.grad for q in parameters if q.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if not torch.isfinite(total) and math.isfinite(max_norm):
        if all(bool(torch.isfinite(g).all()) for g in grads):
            norms = [torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads]
            total = torch.linalg.vector_norm(torch.stack(norms))
    if math.isfinite(max_norm) and torch.isfinite(total):
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return total


class Trainer:
    """Trains ``model`` on ``objective`` as ``cfg.train`` says, writing to ``files``.

    ``identity`` goes into every checkpoint beside the training state: what rebuilds the
    model without data and what a resumed run must match (see :mod:`flowforge.runs`).
    """

    def __init__(
        self,
        cfg: RunConfig,
        objective: Objective,
        model: nn.Module,
        files: RunFiles,
        identity: dict[str, Any],
        group: Group | None = None,
        loggers: list[RunLogger] | None = None,
    ) -> None:
        self.cfg, self.objective, self.model, self.files = cfg, objective, model, files
        self.loggers = loggers or []
        self.identity = identity
        self.group = group or Group()
        self.device = next(model.parameters(), torch.zeros(())).device
        if cfg.train.compile is True and objective.own_steps_name:
            raise ConfigError(
                f"train.compile: objective {objective.name!r} takes steps of its own "
                f"({objective.own_steps_name}) outside the training module, which compile "
                f"cannot include; remove train.compile"
            )
        self.parameters = list(objective.parameters(model))
        #: whether the training step is compiled, and why (recorded in the run)
        self.compile = decide(
            cfg.train.compile,
            model_name=cfg.model.name,
            model_options=cfg.model.options,
            objective=objective.name,
            own_steps=objective.own_steps_name,
            params=sum(p.numel() for p in self.parameters),
            batch_size=cfg.train.batch_size,
            steps=cfg.train.steps,
            max_seconds=cfg.train.max_seconds,
            device=self.device,
        )
        self._compile_fell_back = False
        #: whether :meth:`restore` took the decision its checkpoint records
        self.compile_resumed = False
        self.module = objective.training_module(model)
        self.train_module = self._compiled(self.module)
        self.optimizer = make_optimizer(cfg.train, self.parameters, self.device)
        ema = cfg.train.ema
        self.average = ParameterAverage(model, ema) if ema else None
        self.progress = Progress()
        self.started = time.time()
        self.threads = torch.get_num_threads()
        #: why :meth:`fit` returned: "finished", "early_stop" or "time_budget"
        self.stopped = "finished"

    # -- set-up ------------------------------------------------------------------------------
    def _compiled(self, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        """The training module, compiled for the fixed training shapes if so decided."""
        return CompiledStep(fn, self.compile, self._compile_failed) if self.compile.used else fn

    def note_compile(self) -> None:
        """A metrics record of the compile decision (the summary and checkpoints hold it
        always; the metrics where the run compiles, or stops compiling)."""
        record = {"step": self.progress.step, "event": "compile", "compile": self.compile.to_dict()}
        self.files.append_metrics(record)

    def _compile_failed(self, decision: Decision) -> None:
        """Compiling failed: the run goes on eagerly, and its metrics say so."""
        self._compile_fell_back = True
        if self.group.is_main:
            self.note_compile()

    def wrap_data_parallel(self) -> None:
        """Under torchrun: data-dependent initialisation on the step's whole batch, rank 0's
        parameters on every rank, and the training module through DDP."""
        from torch.nn.parallel import DistributedDataParallel

        self.init_data_dependent()
        devices = [self.device] if self.device.type == "cuda" else None
        self.train_module = self._compiled(DistributedDataParallel(self.module, device_ids=devices))

    def init_data_dependent(self) -> None:
        """Initialises ActNorm-like layers on the current step's whole batch (the batch a
        single process would initialise them on), then copies rank 0's state to every rank."""
        if needs_data_init(self.model):
            with torch.no_grad():
                self.objective.training_module(self.model)(*self.inputs(shard=False))
        self.group.sync(self.model)

    def start(self) -> None:
        """A new run: rank > 0 takes its own random stream, the model is validated first with
        ``train.eval_at_start``, and ``last.pt`` at step 0 is a good state to roll back to
        from the start."""
        if self.group.rank > 0:  # its own stream (dequantization noise, estimator probes)
            torch.manual_seed(rank_seed(self.cfg.seed, self.group.rank, 0))
        if self.compile.used and self.group.is_main:
            self.note_compile()
        if self.cfg.train.eval_at_start:
            began = time.time()
            with torch.no_grad():  # data-dependent starts (actnorm, mixture bases) on batch 0
                self.module(*self.inputs())  # eagerly: no compilation for one no-grad call
            chosen = self.objective.start(self.model)  # and those that need whole splits
            if chosen and self.group.is_main:
                seconds = round(time.time() - began, 3)
                record = {"step": 0, "event": "start", "chosen": chosen, "elapsed": seconds}
                self.files.append_metrics(record)
            if self.group.is_main:
                self.evaluate_and_log()
            # the start is not training: train.max_seconds counts from the first step, so a
            # slow start (a mixture search on a loaded machine) cannot use up the budget
            self.started += time.time() - began
        self.save(LAST)

    def inputs(self, shard: bool = True) -> tuple[Tensor, ...]:
        """The objective's inputs at the current step (this rank's part when ``shard``)."""
        batch = self.objective.batch(self.progress.step)
        if shard and self.group.active:
            batch = tuple(self.group.shard(t) for t in batch)
        return batch

    # -- checkpoints -------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.progress.elapsed + time.time() - self.started

    def state(self) -> dict[str, Any]:
        """The resume point; collective under torchrun (it gathers every rank's random state)."""
        rng = rng_state()
        ranks = self.group.gather(rng) if self.group.active else None
        counters = self.progress.to_payload()
        counters["elapsed"] = self.elapsed()
        return {
            **self.identity,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective_state": self.objective.state_dict(),
            **counters,
            "rng": rng,
            **({"rng_ranks": ranks} if ranks else {}),
            **({"ema": self.average.shadow} if self.average else {}),
            "compile": self.compile.to_dict(),
            "config": self.cfg.to_dict(),
            "version": __version__,
        }

    def save(self, name: str, payload: dict[str, Any] | None = None) -> Path:
        """Writes a checkpoint (rank 0 only); without ``payload`` the full resume state, which
        is collective under torchrun."""
        payload = payload or self.state()
        if self.group.is_main:
            return self.files.save_checkpoint(name, payload)
        return self.files.checkpoint_path(name)

    def restore(self, path: Path) -> None:
        """Loads a resume point written by :meth:`state`, once :meth:`check_resume_point`
        has checked all of it."""
        payload = load_checkpoint(path, map_location=self.device)
        self.progress = self.check_resume_point(path, payload)
        try:
            self.model.load_state_dict(payload["model"])
            # the saved moments, under this run's hyperparameters (a resume may change them)
            configured = [
                {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
            ]
            self.optimizer.load_state_dict(payload["optimizer"])
            for group, hyper in zip(self.optimizer.param_groups, configured, strict=True):
                group.update(hyper)
            self.objective.load_state_dict(payload.get("objective_state", {}))
            set_rng_state(self._rank_rng(payload))
            self._resume_compile(payload.get("compile"))
            if self.average is not None:  # a run that turns averaging on starts it here
                if "ema" in payload:
                    self.average.load(payload["ema"])
                else:
                    self.average.reset()
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: incomplete training state ({e})") from None
        self.started = time.time()

    def _resume_compile(self, saved: Any) -> None:
        """A resumed ``auto`` run takes the decision its checkpoint records (made under
        ``auto``), so it computes as the uninterrupted run did; with none recorded (a
        checkpoint from before) it keeps its own. A run that fell back to eager stays so."""
        if saved is None or self.compile.mode != "auto" or self._compile_fell_back:
            return
        recorded = Decision.from_dict(saved)
        if recorded.mode != "auto":
            return
        changed = recorded.used != self.compile.used
        self.compile.used, self.compile.why = recorded.used, recorded.why
        self.compile_resumed = True
        if changed:
            self.train_module = self._compiled(self.module)

    def check_resume_point(self, path: Path, payload: dict[str, Any]) -> Progress:
        """Checks every part of a resume point against what it will be loaded into, before
        any of it is: the model state, the optimiser's kind and state, the moving average,
        the objective's state (against :meth:`~flowforge.objectives.Objective.
        state_template`), the random states (against this process's) and the counters
        (types and ranges, ``step`` at most the ``train.steps`` of the run that wrote it);
        returns the counters. Anything wrong is a :class:`CheckpointError` naming it."""
        check_model_state(path, self.model, payload.get("model"))
        check_optimizer_kind(path, self.cfg.train.optimizer, payload)
        check_optimizer_state(path, self.optimizer, payload.get("optimizer"))
        if self.average is not None and "ema" in payload:
            check_averaged_parameters(path, self.model, payload["ema"])
        saved = payload.get("objective_state", {})
        check_state(path, "objective state", saved, self.objective.state_template())
        if "compile" in payload:
            try:
                Decision.from_dict(payload["compile"])
            except ValueError as e:
                raise CheckpointError(f"{path}: compile decision {e}") from None
        if "rng" not in payload:
            raise CheckpointError(f"{path}: incomplete training state (no random state 'rng')")
        check_state(path, "random state 'rng'", *_rng_and_template(payload["rng"]))
        ranks = payload.get("rng_ranks")
        if ranks is not None:
            if not isinstance(ranks, list):
                raise CheckpointError(f"{path}: 'rng_ranks' is a {type(ranks).__name__}")
            for i, rng in enumerate(ranks):
                check_state(path, f"random state of rank {i}", *_rng_and_template(rng))
        try:
            return Progress.from_payload(payload, _written_steps(payload, self.cfg.train.steps))
        except StateError as e:
            raise CheckpointError(f"{path}: {e}") from None

    def _rank_rng(self, payload: dict[str, Any]) -> dict[str, Any]:
        """This rank's random state: its own when the checkpoint was written by as many ranks,
        else rank 0's (ranks > 0 then re-seed from the seed, rank and step)."""
        g = self.group
        ranks = payload.get("rng_ranks")
        if not g.active or g.rank == 0:
            return payload["rng"]
        if ranks and len(ranks) == g.world_size:
            return ranks[g.rank]
        torch.manual_seed(rank_seed(self.cfg.seed, g.rank, self.progress.step))
        return rng_state()

    # -- one step ----------------------------------------------------------------------------
    def train_step(self) -> tuple[float, str | None]:
        """One optimiser step; returns the loss (the mean over ranks) and, if non-finite, what
        diverged."""
        p = self.progress
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg.train, p.step) * p.lr_scale
        self.optimizer.zero_grad(set_to_none=True)
        inputs = self.inputs()
        failed = None
        try:
            self.objective.own_steps(self.model, inputs, p.step)
        except StepFailed as e:
            failed = str(e)
        if self.group.any(failed is not None):  # every rank takes the same decision
            return math.nan, failed or "an objective's own step on another rank"
        loss = self.objective.loss(self.train_module(*inputs), self.model, p.step)
        mean = self.group.mean(loss)  # every rank takes the same decision
        if not torch.isfinite(mean):
            return mean.item(), "loss"
        loss.backward()
        max_norm = self.cfg.train.grad_clip if self.cfg.train.grad_clip > 0 else math.inf
        total = clip_gradients(self.parameters, max_norm)
        if not torch.isfinite(total):
            bad = next(
                (
                    name
                    for name, q in self.model.named_parameters()
                    if q.grad is not None and not bool(torch.isfinite(q.grad).all())
                ),
                "all parameters (norm overflow)",
            )
            return mean.item(), f"gradient of {bad}"
        self.optimizer.step()
        if self.average is not None:
            self.average.update(p.step)
        return mean.item(), None

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, progress: bool, stop: list[str]) -> None:
        """Trains to ``train.steps`` (or an early stop, or the time budget)."""
        t, p = self.cfg.train, self.progress
        from tqdm import tqdm

        bar = tqdm(
            total=t.steps,
            initial=p.step,
            disable=not (progress and self.group.is_main),
            desc=self.cfg.name,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        bad, pace = 0, StepPace(self.threads)
        if p.step < t.steps and self.group.any(0 < t.max_seconds <= self.elapsed()):
            self.say(bar, f"time budget of {t.max_seconds:g} s already used up: no step taken")
            self.stopped = "time_budget"
            bar.close()
            return
        while p.step < t.steps:
            if self.group.any(bool(stop)):
                path = self.save(LAST)
                bar.close()
                raise TrainingInterrupted(
                    f"{stop[0] if stop else 'a signal to another process'} received at step "
                    f"{p.step}: checkpoint saved to {path}. Resume with: {self.launcher()} "
                    f"train --resume {self.files.path}"
                )
            began, cpu = time.perf_counter(), time.process_time()
            loss, diverged = self.train_step()
            slow = pace.add(time.perf_counter() - began, time.process_time() - cpu)
            if slow:
                self.say(bar, slow)
            if diverged:
                bad += 1
                if bad >= t.max_bad_steps:
                    self.roll_back(diverged)
                    p = self.progress
                    bad = 0
                    bar.n = p.step
                continue
            bad = 0
            p.loss_sum, p.loss_n = p.loss_sum + loss, p.loss_n + 1
            p.step += 1
            bar.update(1)
            out_of_time = self.group.any(0 < t.max_seconds <= self.elapsed())
            if p.step % t.eval_every == 0 or p.step == t.steps or out_of_time:
                if self.evaluate_and_checkpoint(bar):
                    self.stopped = "early_stop"
                    break
                if out_of_time and p.step < t.steps:
                    self.stopped = "time_budget"
                    self.say(
                        bar,
                        f"time budget of {t.max_seconds:g} s used up at step {p.step} "
                        f"({self.elapsed():.0f} s of training)",
                    )
                    break
        bar.close()

    def evaluate_and_checkpoint(self, bar: Any) -> bool:
        """Validates, logs, writes ``last.pt``; returns whether patience ran out."""
        t, p = self.cfg.train, self.progress
        self.group.check_same(self.model)
        if self.group.is_main:  # the other ranks wait in save()
            val = self.evaluate_and_log()
            bar.set_postfix(val=f"{val:.4f}")
        p.loss_sum, p.loss_n = 0.0, 0
        self.save(LAST)
        p.evals_since_best = self.group.broadcast(p.evals_since_best)
        if t.patience and p.evals_since_best >= t.patience:
            self.say(
                bar,
                f"early stop at step {p.step}: no validation improvement in {t.patience} "
                f"evaluations",
            )
            return True
        return False

    def launcher(self) -> str:
        g = self.group
        if g.active:
            return f"torchrun --nproc_per_node={g.world_size} -m flowforge.cli"
        return "flowforge"

    def say(self, bar: Any, message: str) -> None:
        """A message under the progress bar, from rank 0 only."""
        if self.group.is_main:
            bar.write(message)

    def averaged(self) -> AbstractContextManager[None]:
        """The averaged parameters in the model inside the block, if ``train.ema`` is on."""
        return self.average.applied() if self.average is not None else nullcontext()

    def evaluate_and_log(self) -> float:
        """The validation metric (of the averaged parameters, if any): keeps the best model in
        best.pt and appends a metrics record. Its seconds add up in ``eval_elapsed``."""
        p, metric = self.progress, self.objective.metric
        began = time.perf_counter()
        with self.averaged():
            scores = self.objective.validate(self.model)
            p.eval_elapsed += time.perf_counter() - began
            val = scores[f"val_{metric}"]
            if val < p.best_val:
                p.best_val, p.evals_since_best = val, 0
                self.save(
                    BEST,
                    {
                        **self.identity,
                        "model": self.model.state_dict(),
                        "step": p.step,
                        f"val_{metric}": val,
                        "config": self.cfg.to_dict(),
                        "version": __version__,
                    },
                )
            else:
                p.evals_since_best += 1
        record = {
            "step": p.step,
            self.objective.train_key: p.loss_sum / max(p.loss_n, 1),
            **scores,
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed": round(self.elapsed(), 3),
        }
        if self.group.is_main:
            self.files.append_metrics(record)
            with self.averaged():
                for logger in self.loggers:
                    logger.log_evaluation(p.step, record, self.model)
        return val

    def roll_back(self, what: str) -> None:
        """Back to ``last.pt`` with the learning rate halved once more than the last try, or
        :class:`TrainingDiverged` after ``max_rollbacks``."""
        last = self.files.checkpoint_path(LAST)
        t, p = self.cfg.train, self.progress
        tried = [t.lr * p.lr_scale * 2**k for k in range(p.rollbacks, -1, -1)]
        if p.rollbacks >= t.max_rollbacks:
            rates = ", ".join(f"{r:.3g}" for r in tried)
            raise TrainingDiverged(
                f"non-finite {what} in {t.max_bad_steps} consecutive steps at step {p.step}, "
                f"after {p.rollbacks} rollbacks (peak learning rates tried: {rates}). The last "
                f"good checkpoint is {last}; resume with a lower rate, e.g. {self.launcher()} "
                f"train --resume {self.files.path} --set train.lr={t.lr * p.lr_scale / 2:.3g}"
            )
        rollbacks, lr_scale, step = p.rollbacks + 1, p.lr_scale * 0.5, p.step
        self.restore(last)
        p = self.progress
        p.rollbacks, p.lr_scale = rollbacks, lr_scale  # cumulative: each retry is slower
        if self.group.active:  # a step-0 checkpoint predates ActNorm's initialisation
            self.init_data_dependent()
        if self.group.is_main:
            self.files.truncate_metrics(p.step)
            self.files.append_metrics(
                {
                    "step": p.step,
                    "event": "rollback",
                    "diverged": what,
                    "at_step": step,
                    "lr_scale": p.lr_scale,
                }
            )
            print(
                f"warning: non-finite {what} at step {step}; rolled back to step {p.step} "
                f"with learning rate x{p.lr_scale}",
                file=sys.stderr,
            )
