"""MADE: the autoregressive property, tested on the network's Jacobian, and the degree sweep
that inverts it in one network's work."""

import pytest
import torch

from flowforge.nn.made import MADE, made_order


def _jacobian_support(made: MADE, context: torch.Tensor | None = None) -> torch.Tensor:
    """Which outputs ``(D * P)`` depend on which inputs ``(D)``, over several random points."""
    torch.nn.init.normal_(made.output.weight)  # the zero-initialised layer would hide edges
    made = made.double()
    support = torch.zeros(made.features * made.params_per_dim, made.features, dtype=torch.bool)
    ctx = None if context is None else context.double()
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, made.features, generator=g, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: made(v, ctx)[0], x)[:, 0, :]
        support |= jac != 0
    return support


@pytest.mark.parametrize(
    "order, hidden, residual_blocks, context",
    [
        ("natural", (32, 32), 0, 0),
        ("reversed", (32,), 0, 0),
        ("random", (40, 40, 40), 0, 2),
        ([3, 1, 4, 2, 6, 5], (32,), 2, 0),
        ("random", (24,), 1, 3),
    ],
)
def test_jacobian_is_zero_unless_input_precedes_output(order, hidden, residual_blocks, context):
    torch.manual_seed(0)
    d, p = 6, 2
    made = MADE(d, p, hidden, order, residual_blocks, "tanh", context, seed=4)
    c = torch.randn(1, context) if context else None
    support = _jacobian_support(made, c)
    deg = made.degrees
    allowed = (deg[None, :] < deg[:, None]).repeat_interleave(p, dim=0)  # (D * P, D)
    # exactly the allowed edges: none outside (autoregressive), all inside (full connectivity)
    assert torch.equal(support, allowed)


@pytest.mark.parametrize(
    "features, hidden, order, residual_blocks, context",
    [
        (1, (8,), "natural", 0, 0),
        (5, (16, 16), "natural", 0, 0),
        (5, (3, 3), "random", 0, 0),  # narrower than D: some degrees have no unit
        (6, (24,), [3, 1, 4, 2, 6, 5], 2, 0),
        (4, (16, 16), "reversed", 0, 3),
        (4, (12,), "random", 1, 2),
    ],
)
def test_sweep_gives_the_forward_pass_at_the_solved_inputs(
    features, hidden, order, residual_blocks, context
):
    """Each dimension's parameters are those of a full pass at the final inputs, they are
    asked for in the order, and gradients reach the weights through the sweep."""
    torch.manual_seed(0)
    made = MADE(features, 3, hidden, order, residual_blocks, "tanh", context, seed=1).double()
    torch.nn.init.normal_(made.output.weight)
    c = torch.randn(5, context, dtype=torch.float64) if context else None
    solved = torch.randn(5, features, dtype=torch.float64)
    asked, params = [], {}

    def solve(i, p):
        asked.append(i)
        params[i] = p
        return solved[:, i] + p[:, 0]  # the value depends on the parameters, as in inversion

    made.sweep(solve, 5, c)
    x = torch.stack([solved[:, i] + params[i][:, 0] for i in range(features)], dim=1)
    full = made(x, c).view(5, features, 3)
    assert asked == torch.argsort(made.degrees).tolist()
    for i in range(features):
        assert torch.allclose(params[i], full[:, i], atol=1e-12)
    sum(p.sum() for p in params.values()).backward()
    assert made.output.weight.grad is not None and made.output.weight.grad.abs().sum() > 0


def test_context_reaches_every_output_including_the_first_dimension():
    torch.manual_seed(0)
    made = MADE(4, 3, (16, 16), "natural", context_features=2, activation="tanh")
    torch.nn.init.normal_(made.output.weight)
    x = torch.randn(1, 4)
    jac = torch.autograd.functional.jacobian(lambda c: made(x, c)[0], torch.randn(1, 2))[:, 0]
    assert bool((jac.abs().sum(1) > 0).all())


def test_starts_at_zero_and_masks_live_in_buffers():
    made = MADE(5, 3, (8, 8), "random", residual_blocks=0)
    # the antisymmetric start: zero up to the rounding of the paired products
    assert made(torch.randn(7, 5)).abs().max() <= 1e-6
    state = made.state_dict()
    assert "degrees" in state and any(k.endswith("mask") for k in state)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"order": "sideways"}, "'order'"),
        ({"order": [1, 2, 2, 4, 5]}, "'order'"),
        ({"hidden": (8, 16), "residual_blocks": 1}, "'hidden'"),
        ({"hidden": ()}, "'hidden'"),
        ({"activation": "nope"}, "'activation'"),
        ({"params_per_dim": 0}, "'params_per_dim'"),
    ],
)
def test_validation_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MADE(5, **{"params_per_dim": 1, **kwargs})


def test_orders():
    assert made_order(4, "natural").tolist() == [1, 2, 3, 4]
    assert made_order(4, "reversed").tolist() == [4, 3, 2, 1]
    assert sorted(made_order(6, "random", seed=1).tolist()) == [1, 2, 3, 4, 5, 6]
    assert torch.equal(made_order(6, "random", seed=1), made_order(6, "random", seed=1))


def test_missing_context_is_an_error():
    with pytest.raises(ValueError, match="context"):
        MADE(3, 1, (8,), context_features=2)(torch.randn(2, 3))
