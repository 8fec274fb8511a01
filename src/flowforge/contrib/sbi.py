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
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from sbi.neural_nets.estimators.base import ConditionalDensityEstimator
from torch import Tensor, nn

from flowforge.flows import Flow
from flowforge.models import RECIPES
from flowforge.transforms.base import Compose, Transform

__all__ = ["FlowEstimator", "Standardize", "flowforge_nn", "zscore_statistics"]

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


class Standardize(Transform):
    r"""The fixed affine map :math:`u = (x - m) / s` (buffers, not parameters).

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
    """

    def __init__(
        self,
        flow: Flow,
        embedding_net: nn.Module,
        input_shape: torch.Size,
        condition_shape: torch.Size,
    ) -> None:
        super().__init__(flow, torch.Size(input_shape), torch.Size(condition_shape))
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
        """``log q(input | condition)``, shape ``(sample, batch)`` (batches broadcast)."""
        self._check_condition_shape(condition)
        self._check_input_shape(input)
        input, condition, batch = self._broadcast_and_align(input, condition)
        n = input.shape[0] * batch
        context = self._context(condition.reshape(n, *self.condition_shape))
        log_p = self.flow.log_prob(input.reshape(n, *self.input_shape), context)
        return log_p.reshape(input.shape[0], batch)

    def loss(self, input: Tensor, condition: Tensor) -> Tensor:  # noqa: A002
        """Negative log-density of each pair, ``(batch,)``."""
        return -self.log_prob(input.unsqueeze(0), condition)[0]

    def sample(self, sample_shape: torch.Size | tuple[int, ...], condition: Tensor) -> Tensor:
        """Draws ``(*sample_shape, batch, *input_shape)`` for conditions ``(batch, *cond)``."""
        self._check_condition_shape(condition)
        return self.flow.as_distribution(self._context(condition)).sample(sample_shape)

    def sample_and_log_prob(
        self, sample_shape: torch.Size | tuple[int, ...], condition: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Draws and their log-density from one sampling pass."""
        self._check_condition_shape(condition)
        d = self.flow.as_distribution(self._context(condition))
        return d.rsample_and_log_prob(sample_shape)


def flowforge_nn(
    model: str | Callable[..., Flow] = "nsf",
    z_score_theta: str = "independent",
    z_score_x: str = "independent",
    embedding_net: nn.Module | None = None,
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
        base_flow = recipe(features, context_features=width, **options)
        steps: list[Transform] = [base_flow.transform]
        if z_score_theta != "none":
            steps.insert(
                0, Standardize(*zscore_statistics(batch_theta, z_score_theta, 1e-14, "theta"))
            )
        flow = Flow(Compose(steps), base_flow.base, context_features=width)
        flow = flow.to(dtype=batch_theta.dtype, device=batch_theta.device)
        embedding = embedding.to(dtype=batch_theta.dtype, device=batch_theta.device)
        return FlowEstimator(flow, embedding, batch_theta.shape[1:], batch_x.shape[1:])

    return build
