r"""Any flowforge recipe as an sbi density estimator, for neural posterior estimation (NPE).

NPE (Papamakarios and Murray 2016, https://arxiv.org/abs/1605.06376; Greenberg et al. 2019,
https://arxiv.org/abs/1905.07488) fits a conditional density :math:`q(\theta \mid x)` to
simulated pairs by maximum likelihood; :func:`flowforge_nn` returns the builder sbi calls with
the first round's simulations (``NPE(prior, density_estimator=flowforge_nn("nsf"))``).

Standardisation, as sbi's own builders do it (``sbi.neural_nets.net_builders``): with
:math:`m, s` the mean and standard deviation of the training batch,

- :math:`\theta` goes through the fixed affine map :math:`u = (\theta - m_\theta)/s_\theta`
  *inside* the flow, so that ``log_prob`` stays in :math:`\theta`'s units:
  :math:`\log q(\theta \mid x) = \log q_u(u \mid x) - \sum_i \log s_{\theta,i}`;
- :math:`x` is z-scored before the (optional) embedding network: it only conditions.

Shapes follow sbi's ``ConditionalDensityEstimator``: ``log_prob(input, condition)`` takes
``input`` ``(sample, batch, *input_shape)`` or ``(batch, *input_shape)`` and ``condition``
``(batch, *condition_shape)`` (or with a sample dimension) and returns ``(sample, batch)``;
``sample(sample_shape, condition)`` returns ``(*sample_shape, batch, *input_shape)``;
``loss(input, condition)`` is the negative log-density, ``(batch,)``.

Training mode: ``loss`` is the training objective and runs the flow as flowforge's trainer
does (in training mode batch norm uses the batch's statistics and updates its running
averages); ``log_prob``, ``sample`` and ``sample_and_log_prob`` are densities and evaluate
inside :func:`flowforge.flows.batch_independent` (flow and embedding), so a posterior's
``log_prob`` of a point does not depend on the other points of the call. sbi's multi-round
NPE-C loss scores atoms with ``log_prob``, so there batch norm uses its running averages.

Sizes: the recipes' defaults are the papers' (``nsf``: 10 layers of 256 units, 2.8 million
parameters even for 2 parameters), made for hundreds of thousands of rows. For ``nsf``,
``maf`` and ``realnvp`` the builder sizes the flow from the simulations instead, as
``flowforge train --data`` sizes a model from a table
(:func:`flowforge.models.sizing.sized_options` with the number of simulations), with two
changes: the base stays the recipe's standard normal, as in sbi's own estimators (the sized
mixture base is unconditional, started from the latents of all simulations rather than from
the posterior of any one :math:`x`), and the
hidden width is at least the conditioner's input width (parameters plus context features,
rounded up to a power of two, at most 256), so that a wide :math:`x` is not squeezed through
a narrower layer. Options the user passes replace the sized ones; ``sized=False`` keeps the
recipe's defaults.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import Tensor, nn

from flowforge.flows import Flow, batch_independent
from flowforge.models import RECIPES
from flowforge.models.sizing import SIZED, sized_options
from flowforge.transforms.base import Compose, Transform

__all__ = [
    "EventStandardize",
    "FlowEstimator",
    "estimator_options",
    "flowforge_nn",
    "zscore_statistics",
]

Z_SCORES = ("independent", "structured", "none")


def zscore_statistics(batch: Tensor, mode: str, min_std: float, name: str) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of ``batch`` (``(N, *event)``) over its first dimension:
    per entry (``"independent"``) or one number for all entries (``"structured"``, sbi's
    choice for time series and images); standard deviations below ``min_std`` become it.

    Raises:
        ValueError: an unknown mode, fewer than two rows, or non-finite rows (counted).
    """
    if mode not in Z_SCORES[:2]:
        raise ValueError(f"the z-score mode should be one of {list(Z_SCORES)}, got {mode!r}")
    if batch.shape[0] < 2:
        raise ValueError(f"z-scoring '{name}' needs at least 2 rows, got {batch.shape[0]}")
    bad = int((~torch.isfinite(batch.reshape(batch.shape[0], -1))).any(1).sum())
    if bad:
        raise ValueError(
            f"'{name}' has {bad} of {batch.shape[0]} rows with non-finite values; exclude "
            "them before training (sbi's append_simulations(exclude_invalid_x=True))"
        )
    if mode == "structured":
        mean, std = batch.mean(), batch.reshape(batch.shape[0], -1).std(dim=1).mean()
        mean, std = mean.expand(batch.shape[1:]), std.expand(batch.shape[1:])
    else:
        mean, std = batch.mean(0), batch.std(0)
    return mean.clone(), std.clamp_min(min_std).clone()


def estimator_options(name: str, features: int, context_features: int, rows: int) -> dict[str, Any]:
    """Sizes of recipe ``name`` (one of :data:`flowforge.models.sizing.SIZED`) for ``rows``
    simulations of ``features`` parameters conditioned on ``context_features``: the sizes
    ``flowforge train --data`` picks for ``rows`` rows, with the recipe's own base and a hidden
    width of at least ``features + context_features`` rounded up to a power of two (at most
    256); see the module docstring."""
    options = sized_options(name, features, rows)
    options.pop("base", None)
    options.pop("components", None)
    floor = min(256, 2 ** math.ceil(math.log2(features + context_features)))
    hidden = options["hidden"]
    if isinstance(hidden, int):
        options["hidden"] = max(hidden, floor)
    else:
        options["hidden"] = [max(h, floor) for h in hidden]
    return options


class EventStandardize(Transform):
    r"""The fixed affine map :math:`u = (x - m) / s` per entry of the whole event shape
    (buffers, not parameters): the z-scoring of ``theta``, whose statistics may be one number
    per entry (:func:`zscore_statistics`). :class:`flowforge.transforms.Standardize` has one
    number per feature of dimension 1.

    .. math:: \log|\det \partial u / \partial x| = -\textstyle\sum_i \log s_i

    Arguments:
        mean: :math:`m`, the event shape.
        std: :math:`s > 0`, the event shape.
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.shape != std.shape:
            raise ValueError(f"'mean' {tuple(mean.shape)} and 'std' {tuple(std.shape)} differ")
        if not bool((std > 0).all()):
            raise ValueError("'std' should be positive")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (x - self.mean) / self.std, (-self.std.log().sum()).expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z * self.std + self.mean, self.std.log().sum().expand(z.shape[0])


class _ZScore(nn.Module):
    """``(x - m) / s`` on conditions ``(N, *condition_shape)``."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class FlowEstimator(ConditionalDensityEstimator):
    """A conditional flowforge :class:`Flow` as sbi's ``ConditionalDensityEstimator``.

    Arguments:
        flow: a flow over ``input_shape`` whose ``context_features`` is the embedding's width.
        embedding_net: maps conditions ``(N, *condition_shape)`` to contexts ``(N, F)``.
        input_shape: event shape of :math:`\\theta`.
        condition_shape: event shape of :math:`x`.
        options: the recipe options the flow was built with (kept as ``options``, to read).
    """

    def __init__(
        self,
        flow: Flow,
        embedding_net: nn.Module,
        input_shape: torch.Size,
        condition_shape: torch.Size,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(flow, torch.Size(input_shape), torch.Size(condition_shape))
        self.options = dict(options or {})
        if tuple(flow.event_shape) != tuple(input_shape):
            raise ValueError(
                f"the flow's event shape {tuple(flow.event_shape)} differs from "
                f"input_shape {tuple(input_shape)}"
            )
        self._embedding_net = embedding_net

    @property
    def embedding_net(self) -> nn.Module:
        return self._embedding_net

    @property
    def flow(self) -> Flow:
        return self.net  # type: ignore[return-value]

    def _context(self, condition: Tensor) -> Tensor:
        """Contexts ``(N, F)`` of conditions ``(N, *condition_shape)``."""
        return self._embedding_net(condition)

    def log_prob(self, input: Tensor, condition: Tensor) -> Tensor:  # noqa: A002 (sbi's name)
        """``log q(input | condition)``, shape ``(sample, batch)`` (batches broadcast), each
        value independent of the others (inside :func:`~flowforge.flows.batch_independent`)."""
        with batch_independent(self):
            return self._log_prob(input, condition)

    def _log_prob(self, input: Tensor, condition: Tensor) -> Tensor:  # noqa: A002
        """:meth:`log_prob` in the modules' own modes: the training path."""
        self._check_condition_shape(condition)
        self._check_input_shape(input)
        input, condition, batch = self._broadcast_and_align(input, condition)
        n = input.shape[0] * batch
        context = self._context(condition.reshape(n, *self.condition_shape))
        log_p = self.flow.log_prob(input.reshape(n, *self.input_shape), context)
        return log_p.reshape(input.shape[0], batch)

    def loss(self, input: Tensor, condition: Tensor) -> Tensor:  # noqa: A002
        """Negative log-density of each pair, ``(batch,)``: the training objective, in the
        modules' own modes (in training mode batch norm uses the batch's statistics)."""
        return -self._log_prob(input.unsqueeze(0), condition)[0]

    def sample(self, sample_shape: torch.Size | tuple[int, ...], condition: Tensor) -> Tensor:
        """Draws ``(*sample_shape, batch, *input_shape)`` for conditions ``(batch, *cond)``."""
        self._check_condition_shape(condition)
        with batch_independent(self):
            return self.flow.as_distribution(self._context(condition)).sample(sample_shape)

    def sample_and_log_prob(
        self, sample_shape: torch.Size | tuple[int, ...], condition: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Draws and their log-density from one sampling pass."""
        self._check_condition_shape(condition)
        with batch_independent(self):
            d = self.flow.as_distribution(self._context(condition))
            return d.rsample_and_log_prob(sample_shape)


def flowforge_nn(
    model: str | Callable[..., Flow] = "nsf",
    z_score_theta: str = "independent",
    z_score_x: str = "independent",
    embedding_net: nn.Module | None = None,
    sized: bool = True,
    **options: object,
) -> Callable[[Tensor, Tensor], FlowEstimator]:
    """A builder ``(batch_theta, batch_x) -> FlowEstimator`` for sbi (``NPE(prior,
    density_estimator=flowforge_nn("maf", layers=5))``), the counterpart of sbi's
    ``posterior_nn``.

    Arguments:
        model: a name in :data:`flowforge.models.RECIPES` or a recipe ``(features,
            context_features=, **options) -> Flow``.
        z_score_theta: ``"independent"``, ``"structured"`` or ``"none"``: the standardisation
            of :math:`\\theta`, an affine map inside the flow (log-densities in theta's units).
        z_score_x: the same for :math:`x`, applied before ``embedding_net``.
        embedding_net: maps ``(N, *x_shape)`` to ``(N, F)``; default: flatten.
        sized: for ``nsf``, ``maf`` and ``realnvp`` over vector parameters, size the flow from
            the simulations (:func:`estimator_options`; the options given here replace the
            sized ones); ``False``: the recipe's defaults (the papers' sizes).
        options: the recipe's own keyword options.

    Raises:
        ValueError: unknown recipe, z-score mode or recipe option (named before any data).
    """
    recipe = RECIPES.get(model) if isinstance(model, str) else model
    if recipe is None:
        raise ValueError(f"'model' should be one of {sorted(RECIPES)} or a recipe, got {model!r}")
    for name, mode in (("z_score_theta", z_score_theta), ("z_score_x", z_score_x)):
        if mode not in Z_SCORES:
            raise ValueError(f"'{name}' should be one of {list(Z_SCORES)}, got {mode!r}")
    params = inspect.signature(recipe).parameters
    if "context_features" not in params:
        raise ValueError(f"recipe {getattr(recipe, '__name__', recipe)!r} takes no context")
    has_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(options) - set(params)) if not has_kwargs else []
    if unknown or "context_features" in options:
        raise ValueError(
            f"unknown options {unknown or ['context_features']} for recipe "
            f"{getattr(recipe, '__name__', recipe)!r} (context_features is set by the builder)"
        )

    def build(batch_theta: Tensor, batch_x: Tensor) -> FlowEstimator:
        if batch_theta.dim() < 2 or batch_x.dim() < 2 or len(batch_theta) != len(batch_x):
            raise ValueError(
                "'batch_theta' and 'batch_x' should be (N, *theta_shape) and (N, *x_shape), got "
                f"{tuple(batch_theta.shape)} and {tuple(batch_x.shape)}"
            )
        embed: list[nn.Module] = []
        if z_score_x != "none":
            embed.append(_ZScore(*zscore_statistics(batch_x, z_score_x, 1e-7, "x")))
        embed.append(embedding_net if embedding_net is not None else nn.Flatten(start_dim=1))
        embedding = nn.Sequential(*embed)
        with torch.no_grad():
            width = embedding(batch_x[:2]).shape[-1]
        theta_shape = tuple(batch_theta.shape[1:])
        features = theta_shape[0] if len(theta_shape) == 1 else theta_shape
        chosen: dict[str, Any] = {}
        if sized and isinstance(model, str) and model in SIZED and len(theta_shape) == 1:
            chosen = estimator_options(model, theta_shape[0], width, len(batch_theta))
        chosen.update(options)
        base_flow = recipe(features, context_features=width, **chosen)
        steps: list[Transform] = [base_flow.transform]
        if z_score_theta != "none":
            steps.insert(
                0, EventStandardize(*zscore_statistics(batch_theta, z_score_theta, 1e-14, "theta"))
            )
        flow = Flow(Compose(steps), base_flow.base, context_features=width)
        flow = flow.to(dtype=batch_theta.dtype, device=batch_theta.device)
        embedding = embedding.to(dtype=batch_theta.dtype, device=batch_theta.device)
        return FlowEstimator(flow, embedding, batch_theta.shape[1:], batch_x.shape[1:], chosen)

    return build
