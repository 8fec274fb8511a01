r"""A flow is a transform plus a base distribution.

.. math:: \log p(x \mid c) = \log p_Z(f(x; c) \mid c) + \log|\det J_f(x; c)|

``f`` is ``transform.forward`` (data to latent). Sampling draws ``z`` from the base and runs
``transform.inverse``. Conditioning on a context ``c`` of shape ``(batch, context_features)`` is
the same call with ``context=``: there is no separate conditional class. A flow knows its
``context_features`` (read from its networks), so a missing, unexpected or wrong-width context
is a named :class:`ValueError` at the entry points, before any network runs.

Training mode and densities: :meth:`Flow.log_prob` is the training path. In training mode its
batch-norm layers standardise with the statistics of the batch in the call and update their
running averages, and layers with a data-dependent start (actnorm, a mixture base) start on the
first batch they see. Maximum-likelihood training with batch norm needs exactly that (Dinh et
al. 2016, https://arxiv.org/abs/1605.08803, section 3.7), so it stays that way. A density must
not depend on the other points of the call: the distribution views
(:meth:`Flow.as_distribution`, :func:`flowforge.contrib.pyro.as_pyro`, the sbi estimator)
evaluate inside :func:`batch_independent`, which puts those layers alone in eval mode for the
call and changes no state.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from flowforge.distributions import BaseDistribution
from flowforge.flow_distribution import FlowDistribution, batch_dependent_layers, batch_independent
from flowforge.transforms.base import Transform, check_inputs

__all__ = [
    "Flow",
    "FlowDistribution",
    "batch_dependent_layers",
    "batch_independent",
    "infer_context_features",
]


def infer_context_features(module: nn.Module) -> int:
    """The context width the networks inside ``module`` expect from the caller.

    A submodule that declares an int ``context_features`` (MADE, MLP and conv conditioners,
    amortised parameters, ...) speaks for its whole subtree, so a transform that conditions an
    inner network on something of its own declares ``context_features = 0`` and hides it
    (``VariationalDequantization``). 0 when no network takes a context.

    Raises:
        ValueError: two networks expect different widths, so no one context fits them all.
    """
    widths: set[int] = set()

    def visit(m: nn.Module) -> None:
        for child in m.children():
            declared = getattr(child, "context_features", None)
            if isinstance(declared, int) and not isinstance(declared, bool):
                if declared > 0:
                    widths.add(declared)
            else:
                visit(child)

    visit(module)
    if len(widths) > 1:
        raise ValueError(
            f"the networks of this flow expect contexts of different widths {sorted(widths)}; "
            "pass 'context_features' to Flow explicitly"
        )
    return widths.pop() if widths else 0


class Flow(nn.Module):
    """A normalizing flow: ``transform`` (data to latent) and ``base`` (latent density).

    Arguments:
        transform: the transform, data to latent.
        base: the base distribution over the latent event shape.
        context_features: width of the conditioning vector; ``None`` (default) reads it from
            the ``context_features`` attribute of the flow's networks (0: unconditional). Give
            it when a hand-written transform uses a context without declaring that attribute.
    """

    #: what maps data to latents (the transform itself, exactly); read by ``flowforge compare``
    latent_inference: ClassVar[str] = "exact inverse"

    def __init__(
        self, transform: Transform, base: BaseDistribution, context_features: int | None = None
    ) -> None:
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"'transform' should be a Transform, got {type(transform).__name__}")
        if not isinstance(base, BaseDistribution):
            raise TypeError(f"'base' should be a BaseDistribution, got {type(base).__name__}")
        self.transform = transform
        self.base = base
        if context_features is None:
            context_features = infer_context_features(self)
        if isinstance(context_features, bool) or not isinstance(context_features, int):
            raise TypeError(f"'context_features' should be an int, got {context_features!r}")
        if context_features < 0:
            raise ValueError(f"'context_features' should be >= 0, got {context_features}")
        self.context_features = context_features

    @property
    def event_shape(self) -> torch.Size:
        return self.base.event_shape

    def as_tensor(self, name: str, value: Tensor | np.ndarray | None) -> Tensor | None:
        """``value`` as a tensor for this flow: tensors pass unchanged (and are checked later),
        a NumPy array of numbers becomes a tensor of the flow's floating dtype and device.

        Raises:
            TypeError: ``value`` is neither a tensor nor a numeric NumPy array (named ``name``).
        """
        if value is None or isinstance(value, Tensor):
            return value
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"'{name}' is a NumPy array of dtype {value.dtype}, not numbers")
            anchor = self.base._anchor
            return torch.as_tensor(value, dtype=anchor.dtype, device=anchor.device)
        raise TypeError(
            f"'{name}' should be a torch.Tensor (or a NumPy array), got {type(value).__name__}"
        )

    def check_context(self, context: Tensor | None) -> None:
        """Checks that ``context`` fits the flow: present exactly when the flow is conditional,
        its last dimension ``context_features`` wide, on the flow's device and dtype.

        Raises:
            ValueError: naming what the flow expects and what it got.
        """
        c = self.context_features
        if c == 0:
            if context is not None:
                raise ValueError(
                    "this flow is unconditional (context_features=0) but got a 'context' of "
                    f"shape {tuple(context.shape)}; build it with context_features= to condition"
                )
            return
        if context is None:
            raise ValueError(f"this flow is conditional: it expects a 'context' of {c} features")
        if context.dim() == 0 or context.shape[-1] != c:
            raise ValueError(
                f"'context' should have {c} features in its last dimension, "
                f"got shape {tuple(context.shape)}"
            )
        self._check_placement("context", context)

    def _check_placement(self, name: str, t: Tensor) -> None:
        anchor = self.base._anchor  # the flow's device and floating dtype
        if t.device != anchor.device:
            raise ValueError(f"'{name}' is on {t.device} but the flow is on {anchor.device}")
        if t.dtype != anchor.dtype:
            raise ValueError(
                f"'{name}' has dtype {t.dtype} but the flow has {anchor.dtype}; "
                f"convert with .to({anchor.dtype})"
            )

    def _check_input(self, x: Tensor, context: Tensor | None) -> None:
        shape = tuple(self.event_shape)
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"'x' should have shape (batch, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        check_inputs(x, None, uses_context=True)  # an empty batch is a named error
        self.check_context(context)
        if context is not None and (context.dim() != 2 or context.shape[0] != x.shape[0]):
            raise ValueError(
                f"'context' should have shape ({x.shape[0]}, {self.context_features}), "
                f"got {tuple(context.shape)}"
            )
        self._check_placement("x", x)

    def _check_finite(self, x: Tensor) -> None:
        """While training (train mode, gradients on), non-finite data is a named error rather
        than a NaN loss: one ``isfinite(x).all()`` on the fast path, rows counted only on error.
        Skipped inside ``torch.compile`` (a data-dependent branch would break the graph)."""
        if not (self.training and torch.is_grad_enabled()) or torch.compiler.is_compiling():
            return
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).sum())
            raise ValueError(
                f"'x' has {bad} of {x.shape[0]} rows with non-finite values (NaN or inf); "
                "drop or impute them before training"
            )

    def _sample_context(self, n: int, context: Tensor | None) -> Tensor | None:
        if isinstance(n, bool) or not hasattr(n, "__index__") or n < 1:
            raise ValueError(f"'n' should be a positive int (number of samples), got {n!r}")
        self.check_context(context)
        if context is None:
            return None
        if context.dim() == 1:
            return context.unsqueeze(0).expand(n, -1)
        if context.dim() != 2 or context.shape[0] != n:
            raise ValueError(
                f"'context' should have shape ({self.context_features},) or "
                f"({n}, {self.context_features}), got {tuple(context.shape)}"
            )
        return context

    def log_prob(
        self, x: Tensor | np.ndarray, context: Tensor | np.ndarray | None = None
    ) -> Tensor:
        """Exact log-density of ``x`` (``(batch, *event)``), shape ``(batch,)``.

        NumPy arrays are converted to the flow's dtype; non-finite rows of ``x`` while training
        raise a :class:`ValueError` that counts them. This is the training path: in training
        mode batch norm uses the statistics of ``x`` (a row's value depends on the other rows,
        and a single row is an error) and updates its running averages. For a density of each
        row on its own, call it in eval mode, inside :func:`batch_independent`, or through
        :meth:`as_distribution`.
        """
        x, context = self.as_tensor("x", x), self.as_tensor("context", context)
        self._check_input(x, context)
        self._check_finite(x)
        z, ladj = self.transform(x, context)
        return self.base.log_prob(z, context) + ladj

    def transform_to_latent(
        self, x: Tensor | np.ndarray, context: Tensor | np.ndarray | None = None
    ) -> Tensor:
        """Maps data to the latent space: ``z = f(x)``."""
        x, context = self.as_tensor("x", x), self.as_tensor("context", context)
        self._check_input(x, context)
        return self.transform(x, context)[0]

    def rsample(
        self, n: int, context: Tensor | np.ndarray | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Draws ``n`` samples with gradients flowing to the parameters (reparameterised).

        ``context`` is ``(context_features,)`` (shared) or ``(n, context_features)``.
        """
        context = self._sample_context(n, self.as_tensor("context", context))
        z = self.base.sample(n, context, temperature)
        return self.transform.inverse(z, context)[0]

    @torch.no_grad()
    def sample(
        self, n: int, context: Tensor | np.ndarray | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Draws ``n`` samples without gradients; see :meth:`rsample`."""
        return self.rsample(n, context, temperature)

    def sample_and_log_prob(
        self, n: int, context: Tensor | np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws ``n`` reparameterised samples and their log-density in one inverse pass.

        ``log p(x) = log p_Z(z) - log|det dx/dz|``: the case variational inference needs, one
        pass even for IAF.
        """
        context = self._sample_context(n, self.as_tensor("context", context))
        z = self.base.sample(n, context)
        x, ladj = self.transform.inverse(z, context)
        return x, self.base.log_prob(z, context) - ladj

    def as_distribution(
        self, context: Tensor | np.ndarray | None = None, validate_args: bool | None = None
    ) -> FlowDistribution:
        """A ``torch.distributions.Distribution`` view (see :class:`FlowDistribution`): a
        context of shape ``(*batch, context_features)`` gives ``batch_shape == batch``. It
        evaluates inside :func:`batch_independent`, whatever the flow's mode."""
        return FlowDistribution(self, context, validate_args)
