r"""Adversarial objectives: the GAN, the WGAN (weight clipping) and the WGAN-GP.

The model is a :class:`~flowforge.models.gan.GAN` (generator :math:`G` and critic :math:`D` in
one module). Within the one trainer: :meth:`Adversarial.parameters` hands the trainer's
optimiser (``train.optimizer``) the **generator's** parameters only; before each of the
trainer's steps, the objective's own steps (:meth:`Adversarial.own_steps`, protocol of
:mod:`flowforge.objectives.base`) update the **critic** ``n_critic`` times with the objective's
own optimiser (its state is in :meth:`state_dict`, so every checkpoint holds it and a resumed
run is bit-identical), each on its own batch of real data and fresh noise; then the training
module gives the critic's scores of fresh generated points, the critic frozen, and the trainer
steps the generator on their loss. A critic update that meets a non-finite loss or gradient is
skipped and raises :class:`~flowforge.objectives.base.StepFailed` naming it, which the trainer
counts as a bad step. ``train.compile`` is refused: the critic's updates are not part of the
compiled module.

- ``gan`` (Goodfellow et al. 2014, https://arxiv.org/abs/1406.2661): the critic is the
  discriminator's logit, trained by binary cross-entropy, :math:`-\log \sigma(D(x)) -
  \log(1 - \sigma(D(G(z))))`; the generator minimises the **non-saturating** loss
  :math:`-\log \sigma(D(G(z)))` (section 3 of the paper). Paper's defaults: ``n_critic = 1``
  (their ``k``); the critic's Adam (2e-4, betas (0.5, 0.999)) is DCGAN's (Radford et al. 2016,
  https://arxiv.org/abs/1511.06434), and so is the generator's there: Adam 2e-4, betas
  (0.5, 0.999) (Goodfellow et al. trained both by SGD with momentum).
- ``wgan`` (Arjovsky et al. 2017, https://arxiv.org/abs/1701.07875, algorithm 1): the critic
  maximises :math:`\mathbb E D(x) - \mathbb E D(G(z))` with RMSProp (lr 5e-5), its weights
  clipped to ``[-clip, clip]`` (0.01) after each update, ``n_critic = 5``; the generator
  minimises :math:`-\mathbb E D(G(z))`; the paper's generator also takes RMSProp 5e-5
  (batch 64).
- ``wgan_gp`` (Gulrajani et al. 2017, https://arxiv.org/abs/1704.00028, algorithm 1): the same
  losses, no clipping, plus :math:`\lambda \mathbb E(\lVert\nabla_{\hat x} D(\hat x)\rVert_2
  - 1)^2` on random interpolates :math:`\hat x` of real and generated points, :math:`\lambda =
  10`, ``n_critic = 5``, the critic's Adam (1e-4, betas (0, 0.9)); the paper's generator uses
  the same Adam.

The critic's optimiser is the paper's, built here. The generator's is the trainer's, so the run
config says it; a paper's generator is (configs/compare/8gaussians.yaml does this)::

    train: {optimizer: adam, betas: [0.5, 0.999], lr: 0.0002, schedule: constant}  # gan
    train: {optimizer: rmsprop, lr: 0.00005, schedule: constant}                    # wgan
    train: {optimizer: adam, betas: [0.0, 0.9], lr: 0.0001, schedule: constant}     # wgan_gp

The default (AdamW, betas (0.9, 0.999), cosine schedule) is none of them.

Validation (lower is better): the unbiased MMD^2 (Gaussian kernel, bandwidth the median
distance between validation points, fixed for the run: :func:`flowforge.metrics.mmd`) between
``val_n`` generated points (fixed noise) and the first ``val_n`` validation points; also the
critic's gap :math:`\mathbb E D(x) - \mathbb E D(G(z))` there. The test numbers are the MMD and
the sliced Wasserstein distance on ``eval_n`` points; a GAN has no likelihood.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.metrics import median_bandwidth, mmd, sliced_wasserstein
from flowforge.models.gan import GAN
from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    StepFailed,
    eval_mode,
    evaluation_rng,
    tensor_fingerprint,
)
from flowforge.objectives.results import Evaluation, Measure

__all__ = ["GANObjective", "WGAN", "WGANGP", "Adversarial"]


class _GeneratorScores(nn.Module):
    """``forward(real)``: the critic's scores ``(B,)`` of ``B`` fresh generated points, for
    ``real`` ``(n_critic, B, D)`` (the critic frozen, so the trainer's backward reaches only
    the generator)."""

    def __init__(self, gan: GAN) -> None:
        super().__init__()
        self.gan = gan

    def forward(self, real: Tensor) -> Tensor:
        critic = list(self.gan.critic.parameters())
        for p in critic:
            p.requires_grad_(False)
        try:
            return self.gan.score(self.gan.generate(self.gan.noise(real.shape[1])))
        finally:
            for p in critic:
                p.requires_grad_(True)


class Adversarial(Objective):
    """The adversarial protocol shared by ``gan``, ``wgan`` and ``wgan_gp`` (module
    docstring); subclasses give the losses, the critic's optimiser and what follows its step."""

    metric = "mmd"
    model_type = GAN
    train_key = "train_generator_loss"
    own_steps_name = "critic updates"

    def __init__(
        self, setting: Setting, n_critic: int, critic_lr: float, val_n: int, eval_n: int
    ) -> None:
        super().__init__(setting)
        for key, value in (("n_critic", n_critic), ("val_n", val_n), ("eval_n", eval_n)):
            if value < 1:
                raise ObjectiveError(f"objective.{key}: should be positive, got {value}")
        if not critic_lr > 0:
            raise ObjectiveError(f"objective.critic_lr: should be positive, got {critic_lr}")
        if len(self.data.event_shape) != 1 or self.data.context_features:
            raise ObjectiveError(
                f"objective {self.name!r}: the GAN models unconditional vectors, got data of "
                f"shape {self.data.event_shape} with {self.data.context_features} context features"
            )
        self.n_critic, self.critic_lr, self.val_n, self.eval_n = n_critic, critic_lr, val_n, eval_n
        self.bandwidth = median_bandwidth(self.data.val[:val_n])
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    # -- what subclasses define --------------------------------------------------------------
    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        raise NotImplementedError

    def critic_loss(self, gan: GAN, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def after_critic_step(self, gan: GAN) -> None:
        """What follows each critic update (WGAN: clipping)."""

    def generator_loss(self, scores: Tensor) -> Tensor:
        """The generator's loss from the critic's scores of generated points."""
        raise NotImplementedError

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        """The generator's loss from the critic's scores of generated points."""
        return self.generator_loss(terms)

    # -- the model ---------------------------------------------------------------------------
    def model_inputs(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "context_features": 0}

    def parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        return model.generator.parameters()  # type: ignore[union-attr, return-value]

    # -- training ----------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[Tensor, ...]:
        """``n_critic`` batches of real data, ``(n_critic, B, D)``: those of the virtual steps
        ``step * n_critic + i`` (each epoch a permutation, as every objective's)."""
        rows = [self.train_rows(step * self.n_critic + i) for i in range(self.n_critic)]
        return (torch.stack(rows).to(self.setting.device),)

    def training_module(self, model: nn.Module) -> nn.Module:
        self._critic_optimizer(model)  # type: ignore[arg-type]
        return _GeneratorScores(model)  # type: ignore[arg-type]

    def own_steps(self, model: nn.Module, batch: tuple[Tensor, ...], step: int) -> None:
        """``n_critic`` critic updates, one on each batch of real data of the step's inputs
        ``(n_critic, B, D)``; the first that fails stops them (:meth:`update_critic`)."""
        (real,) = batch
        for i, rows in enumerate(real):
            what = self.update_critic(model, rows)  # type: ignore[arg-type]
            if what is not None:
                raise StepFailed(f"{what} (critic update {i + 1} of {len(real)})")

    def _critic_optimizer(self, gan: GAN) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.make_optimizer(list(gan.critic.parameters()))
            if self._pending is not None:
                self._load_critic_state(self._pending)
                self._pending = None
        return self.optimizer

    def update_critic(self, gan: GAN, real: Tensor) -> str | None:
        """One update of the critic on ``real`` and as many generated points (noise drawn from
        torch's generator, whose state every checkpoint keeps); skipped when its loss or a
        gradient is not finite, and then what was not is returned (``"critic loss"``,
        ``"gradient of critic.NAME"``; else ``None``)."""
        opt = self._critic_optimizer(gan)
        params = list(gan.critic.parameters())
        with torch.enable_grad():
            with torch.no_grad():
                fake = gan.generate(gan.noise(real.shape[0]))
            loss = self.critic_loss(gan, real, fake)
            grads = torch.autograd.grad(loss, params)
        if not torch.isfinite(loss):
            return "critic loss"
        bad = next(
            (
                n
                for (n, _), g in zip(gan.critic.named_parameters(), grads, strict=True)
                if not bool(torch.isfinite(g).all())
            ),
            None,
        )
        if bad is not None:
            return f"gradient of critic.{bad}"
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        self.after_critic_step(gan)
        return None

    def state_dict(self) -> dict[str, Any]:
        if self.optimizer is not None:
            return {"critic_optimizer": self.optimizer.state_dict()}
        return {} if self._pending is None else {"critic_optimizer": self._pending}

    def state_template(self) -> dict[str, Any]:
        """The critic's optimiser (built with the training module): its saved state is checked
        against the critic's parameters (a short Adam moment would corrupt the heap)."""
        if self.optimizer is None:
            return super().state_template()
        return {"critic_optimizer": self.optimizer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) - {"critic_optimizer"}:
            raise ValueError(f"objective {self.name!r}: unknown state {sorted(state)}")
        if "critic_optimizer" not in state:
            return
        if self.optimizer is None:
            self._pending = state["critic_optimizer"]
        else:
            self._load_critic_state(state["critic_optimizer"])

    def _load_critic_state(self, state: dict[str, Any]) -> None:
        """The saved moments under this run's hyperparameters (``critic_lr``: a resume may
        change it, as the trainer keeps ``train.lr``)."""
        assert self.optimizer is not None
        configured = [
            {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
        ]
        self.optimizer.load_state_dict(state)
        for group, hyper in zip(self.optimizer.param_groups, configured, strict=True):
            group.update(hyper)

    def fingerprint(self) -> dict[str, str]:
        return {"train_data": tensor_fingerprint(self.data.train)}

    # -- scores ------------------------------------------------------------------------------
    def _samples(self, model: nn.Module, n: int) -> Tensor:
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            return model.sample(n).cpu()  # type: ignore[operator]

    def validate(self, model: nn.Module) -> dict[str, float]:
        real = self.data.val[: self.val_n]
        fake = self._samples(model, len(real))
        m = mmd(fake, real, self.bandwidth)
        with torch.no_grad(), eval_mode(model):
            dev = self.setting.device
            gap = model.score(real.to(dev)).mean() - model.score(fake.to(dev)).mean()  # type: ignore[operator]
        return {"val_mmd": m.value, "val_stderr": m.stderr, "val_critic_gap": float(gap)}

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The headline is the MMD^2 (unbiased, so it may be slightly negative), the sliced
        Wasserstein distance beside it; no NLL."""
        how = f"unbiased, Gaussian kernel, {numbers.get('eval_n')} points"
        mmd2 = Measure(
            f"{split} MMD^2",
            numbers[f"{split}_mmd"],
            numbers[f"{split}_mmd_stderr"],
            "",
            "estimate",
            how,
        )
        swd = Measure(f"{split} SWD", numbers[f"{split}_swd"], None, "", "estimate")
        return Evaluation(mmd2, None, (swd,), numbers)

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``<split>_mmd`` (and its standard error, the bandwidth) and ``<split>_swd`` on the
        first ``eval_n`` examples of ``split`` and as many samples; a GAN has no NLL."""
        self.check_split(split)
        real = self.split_rows(split)[: self.eval_n]
        fake = self._samples(model, len(real))
        m = mmd(fake, real, self.bandwidth)
        return {
            f"{split}_mmd": m.value,
            f"{split}_mmd_stderr": m.stderr,
            f"{split}_swd": sliced_wasserstein(fake, real),
            "mmd_bandwidth": m.bandwidth,
            "eval_n": len(real),
        }


class GANObjective(Adversarial):
    """``objective: {name: gan}``: Goodfellow et al.'s GAN with the non-saturating generator
    loss (module docstring).

    Arguments:
        setting: from the run.
        n_critic: discriminator updates per generator update (the paper's ``k = 1``).
        critic_lr: the discriminator's Adam learning rate (DCGAN: 2e-4, betas (0.5, 0.999);
            its generator: ``train: {optimizer: adam, betas: [0.5, 0.999], lr: 0.0002}``).
        val_n: validation points of the MMD.
        eval_n: test points of the MMD and sliced Wasserstein distance.
    """

    name = "gan"

    def __init__(
        self,
        setting: Setting,
        n_critic: int = 1,
        critic_lr: float = 2e-4,
        val_n: int = 1000,
        eval_n: int = 2000,
    ) -> None:
        super().__init__(setting, n_critic, critic_lr, val_n, eval_n)

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.critic_lr, betas=(0.5, 0.999))

    def critic_loss(self, gan: GAN, real: Tensor, fake: Tensor) -> Tensor:
        # -log sigma(D(x)) - log(1 - sigma(D(G(z))))
        return F.softplus(-gan.score(real)).mean() + F.softplus(gan.score(fake)).mean()

    def generator_loss(self, scores: Tensor) -> Tensor:
        return F.softplus(-scores).mean()  # non-saturating: -log sigma(D(G(z)))


class WGAN(Adversarial):
    """``objective: {name: wgan}``: the Wasserstein GAN with weight clipping (module docstring).

    Arguments:
        setting: from the run.
        n_critic: critic updates per generator update (the paper: 5).
        critic_lr: the critic's RMSProp learning rate (the paper: 5e-5; its generator:
            ``train: {optimizer: rmsprop, lr: 0.00005}``).
        clip: the critic's weights are clipped to ``[-clip, clip]`` (the paper: 0.01).
        val_n, eval_n: as for ``gan``.
    """

    name = "wgan"

    def __init__(
        self,
        setting: Setting,
        n_critic: int = 5,
        critic_lr: float = 5e-5,
        clip: float = 0.01,
        val_n: int = 1000,
        eval_n: int = 2000,
    ) -> None:
        super().__init__(setting, n_critic, critic_lr, val_n, eval_n)
        if not clip > 0:
            raise ObjectiveError(f"objective.clip: should be positive, got {clip}")
        self.clip = clip

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(params, lr=self.critic_lr)

    def critic_loss(self, gan: GAN, real: Tensor, fake: Tensor) -> Tensor:
        return gan.score(fake).mean() - gan.score(real).mean()

    def after_critic_step(self, gan: GAN) -> None:
        with torch.no_grad():
            for p in gan.critic.parameters():
                p.clamp_(-self.clip, self.clip)

    def generator_loss(self, scores: Tensor) -> Tensor:
        return -scores.mean()


class WGANGP(WGAN):
    """``objective: {name: wgan_gp}``: the WGAN with a gradient penalty instead of clipping
    (module docstring).

    Arguments:
        setting: from the run.
        n_critic: critic updates per generator update (the paper: 5).
        critic_lr: the critic's Adam learning rate (the paper: 1e-4, betas (0, 0.9); its
            generator: ``train: {optimizer: adam, betas: [0.0, 0.9], lr: 0.0001}``).
        gp_weight: the penalty's weight :math:`\\lambda` (the paper: 10).
        val_n, eval_n: as for ``gan``.
    """

    name = "wgan_gp"

    def __init__(
        self,
        setting: Setting,
        n_critic: int = 5,
        critic_lr: float = 1e-4,
        gp_weight: float = 10.0,
        val_n: int = 1000,
        eval_n: int = 2000,
    ) -> None:
        super().__init__(setting, n_critic, critic_lr, 1.0, val_n, eval_n)
        if gp_weight < 0:
            raise ObjectiveError(f"objective.gp_weight: should be >= 0, got {gp_weight}")
        self.gp_weight = gp_weight

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.critic_lr, betas=(0.0, 0.9))

    def critic_loss(self, gan: GAN, real: Tensor, fake: Tensor) -> Tensor:
        eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(gan.score(mix).sum(), mix, create_graph=True)
        penalty = (grad.norm(dim=1) - 1).pow(2).mean()
        return super().critic_loss(gan, real, fake) + self.gp_weight * penalty

    def after_critic_step(self, gan: GAN) -> None:
        """No clipping: the penalty replaces it."""
