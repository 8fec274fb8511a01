"""Flow.as_distribution: a torch.distributions.Distribution with batch shapes from a context;
and the named errors of the Flow entry points (context, NumPy inputs, non-finite data)."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import constraints

from flowforge import StandardNormal
from flowforge.models import maf, realnvp
from flowforge.testing import perturb_parameters


@pytest.fixture
def cond():
    torch.manual_seed(0)
    flow = realnvp(2, couplings=2, hidden=(8,), context_features=3)
    perturb_parameters(flow, 0.3)
    return flow.eval()


@pytest.fixture
def uncond():
    torch.manual_seed(0)
    flow = realnvp(2, couplings=2, hidden=(8,))
    perturb_parameters(flow, 0.3)
    return flow.eval()


def test_batch_shape_comes_from_the_context(cond):
    c = torch.randn(4, 3)
    d = cond.as_distribution(c)
    assert d.batch_shape == (4,) and d.event_shape == (2,)
    assert cond.as_distribution(torch.randn(3)).batch_shape == ()
    assert cond.as_distribution(torch.randn(5, 4, 3)).batch_shape == (5, 4)


def test_sample_shapes_and_log_prob_per_context(cond):
    torch.manual_seed(1)
    c = torch.randn(4, 3)
    d = cond.as_distribution(c)
    x = d.sample((10, 3))
    assert x.shape == (10, 3, 4, 2) and not x.requires_grad
    lp = d.log_prob(x)
    assert lp.shape == (10, 3, 4)
    # element (s, t, b) is scored under context b
    ref = cond.log_prob(x[:, :, 1].reshape(-1, 2), c[1].expand(30, 3)).reshape(10, 3)
    assert torch.allclose(lp[:, :, 1], ref, atol=1e-5)
    r = d.rsample((2,))
    assert r.shape == (2, 4, 2) and r.requires_grad


def test_samples_follow_their_own_context():
    # Draw (s, b) is the flow's draw under context b: the same noise through flow.sample with
    # the contexts laid out sample-major reproduces the distribution's samples exactly.
    torch.manual_seed(0)
    flow = maf(2, layers=2, hidden=(8,), batch_norm=False, context_features=2)
    perturb_parameters(flow, 0.3)
    flow.eval()
    c = torch.tensor([[2.0, -2.0], [-2.0, 2.0], [0.0, 1.0]])
    torch.manual_seed(1)
    x = flow.as_distribution(c).sample((5,))
    torch.manual_seed(1)
    ref = flow.sample(15, c.repeat(5, 1)).reshape(5, 3, 2)
    assert torch.equal(x, ref)
    lp = flow.as_distribution(c).log_prob(x)
    swapped = flow.as_distribution(c[[1, 0, 2]]).log_prob(x)
    assert lp[:, :2].sum() > swapped[:, :2].sum() + 10  # draws fit their own context best


def test_log_prob_broadcasts_value_against_the_context(cond):
    c = torch.randn(4, 3)
    d = cond.as_distribution(c)
    x = torch.randn(2)  # one point scored under all four contexts
    lp = d.log_prob(x)
    assert lp.shape == (4,)
    assert torch.allclose(lp, cond.log_prob(x.expand(4, 2), c), atol=1e-5)
    assert d.log_prob(torch.randn(7, 1, 2)).shape == (7, 4)


def test_support_event_shape_and_rsample_and_log_prob(cond):
    d = cond.as_distribution(torch.randn(4, 3))
    assert isinstance(d.support, constraints.independent)
    assert d.support.event_dim == 1 and d.support.reinterpreted_batch_ndims == 1
    x, lp = d.rsample_and_log_prob((5,))
    assert x.shape == (5, 4, 2) and lp.shape == (5, 4)
    assert torch.allclose(lp, d.log_prob(x), atol=1e-4)


def test_expand(cond, uncond):
    c = torch.randn(4, 3)
    d = cond.as_distribution(c).expand((6, 4))
    assert type(d).__name__ == "FlowDistribution"
    assert d.batch_shape == (6, 4) and d.sample((2,)).shape == (2, 6, 4, 2)
    x = torch.randn(6, 4, 2)
    assert torch.allclose(d.log_prob(x)[2], cond.as_distribution(c).log_prob(x[2]), atol=1e-5)
    u = uncond.as_distribution().expand((5,))
    assert u.batch_shape == (5,) and u.sample((3,)).shape == (3, 5, 2)
    assert u.log_prob(torch.zeros(2)).shape == (5,)
    with pytest.raises(ValueError, match=r"cannot expand batch_shape \(4,\) to \(5,\)"):
        cond.as_distribution(c).expand((5,))


def test_wrong_shape_value_is_a_named_error(uncond, cond):
    d = uncond.as_distribution()
    with pytest.raises(ValueError, match="event shape|event_shape"):
        d.log_prob(torch.randn(5, 3))
    d = uncond.as_distribution(validate_args=False)
    with pytest.raises(ValueError, match=r"'value' should end in the event shape \(2,\)"):
        d.log_prob(torch.randn(5, 3))
    d = cond.as_distribution(torch.randn(4, 3), validate_args=False)
    with pytest.raises(ValueError, match="does not broadcast against batch_shape"):
        d.log_prob(torch.randn(3, 2))


def test_validate_args_checks_support_and_context(uncond, cond):
    d = uncond.as_distribution(validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([math.nan, 0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        cond.as_distribution(torch.tensor([math.nan, 0.0, 0.0]), validate_args=True)


def test_empty_sample_shape():
    flow = realnvp(2, couplings=2, hidden=(4,))
    assert flow.as_distribution().sample((0,)).shape == (0, 2)


def test_distribution_context_errors(cond, uncond):
    with pytest.raises(ValueError, match="expects a 'context' of 3 features"):
        cond.as_distribution()
    with pytest.raises(ValueError, match=r"3 features in its last dimension, got shape \(4, 2\)"):
        cond.as_distribution(torch.randn(4, 2))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.as_distribution(torch.randn(4, 3))


# --- Flow entry points -------------------------------------------------------------------


def test_flow_knows_its_context_width(cond, uncond):
    assert cond.context_features == 3 and uncond.context_features == 0


def test_context_errors_name_expected_and_got(cond, uncond):
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="conditional: it expects a 'context' of 3 features"):
        cond.log_prob(x)
    with pytest.raises(ValueError, match="conditional: it expects a 'context' of 3 features"):
        cond.sample(5)
    with pytest.raises(ValueError, match=r"3 features in its last dimension, got shape \(5, 4\)"):
        cond.log_prob(x, torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"3 features in its last dimension, got shape \(4,\)"):
        cond.sample(5, torch.randn(4))
    with pytest.raises(ValueError, match=r"unconditional \(context_features=0\).*\(5, 3\)"):
        uncond.log_prob(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.sample_and_log_prob(5, torch.randn(3))


def test_numpy_inputs_are_converted_to_the_flows_dtype(cond):
    x, c = np.random.default_rng(0).normal(size=(5, 2)), np.ones((5, 3))  # float64
    lp = cond.log_prob(x, c)
    assert lp.dtype == torch.float32
    ref = cond.log_prob(torch.as_tensor(x, dtype=torch.float32), torch.ones(5, 3))
    assert torch.allclose(lp, ref)
    assert cond.sample(4, np.zeros(3)).shape == (4, 2)
    assert cond.as_distribution(np.zeros((2, 3))).batch_shape == (2,)


def test_non_arrays_and_non_numeric_arrays_are_rejected_by_name(cond):
    with pytest.raises(TypeError, match="'context' should be a torch.Tensor .* got list"):
        cond.log_prob(torch.randn(2, 2), [[0.0] * 3] * 2)
    with pytest.raises(TypeError, match="'x' is a NumPy array of dtype <U1"):
        cond.log_prob(np.array([["a", "b"]]), torch.zeros(1, 3))


def test_non_finite_rows_are_counted_while_training(uncond):
    x = torch.randn(6, 2)
    x[1, 0], x[4, 1] = math.nan, math.inf
    uncond.train()
    with pytest.raises(ValueError, match="'x' has 2 of 6 rows with non-finite values"):
        uncond.log_prob(x)
    uncond.eval()  # evaluation keeps NaN propagation (a density query, not a training step)
    assert torch.isnan(uncond.log_prob(x)[1])
    uncond.train()
    with torch.no_grad():
        assert torch.isnan(uncond.log_prob(x)[1])


def test_conflicting_context_widths_are_named():
    from flowforge import Flow, StandardNormal
    from flowforge.transforms import Compose

    a = realnvp(2, couplings=1, hidden=(4,), context_features=3).transform
    b = realnvp(2, couplings=1, hidden=(4,), context_features=5).transform
    with pytest.raises(ValueError, match=r"different widths \[3, 5\]"):
        Flow(Compose([a, b]), StandardNormal(2))
    flow = Flow(Compose([a]), StandardNormal(2), context_features=3)
    assert flow.context_features == 3


def test_a_transform_with_an_inner_context_declares_none_to_the_flow():
    from flowforge import Flow
    from flowforge.nn.conv import ConvNet
    from flowforge.transforms.dequantization import VariationalDequantization
    from flowforge.transforms.prior import ContextAffine

    vd = VariationalDequantization((1, 4, 4), lambda i, o, k: ConvNet(i, o, 4, context_features=k))
    assert Flow(vd, StandardNormal((1, 4, 4))).context_features == 0
    assert Flow(ContextAffine((1, 4, 4), 7), StandardNormal((1, 4, 4))).context_features == 7


def test_an_empty_batch_is_a_named_error():
    from flowforge.models import maf, realnvp
    from flowforge.transforms.base import EmptyBatchError

    for flow in (realnvp(2, couplings=2), maf(3, layers=2, hidden=(8,))):
        with pytest.raises(EmptyBatchError, match="no samples"):
            flow.log_prob(torch.zeros(0, flow.event_shape[0]))


# Training mode: the view is batch-independent (batch norm on its running statistics,
# data-dependent starts not run), whatever the flow's mode, and changes no state.


def _buffers(flow):
    return {name: b.clone() for name, b in flow.named_buffers()}


@pytest.fixture
def bn_flow():
    """The maf recipe's default (batch norm between layers) in training mode, as every new
    module starts, with running statistics moved away from their start."""
    torch.manual_seed(0)
    flow = maf(2, layers=3, hidden=(8, 8), context_features=2)
    perturb_parameters(flow, 0.3)
    with torch.no_grad():
        for _ in range(3):
            flow.log_prob(torch.randn(64, 2) * 3 + 1, torch.randn(64, 2))
    assert flow.training
    return flow


def test_the_view_scores_one_point_as_in_eval_mode(bn_flow):
    x, c = torch.randn(5, 2), torch.randn(5, 2)
    d = bn_flow.as_distribution(c)
    one = bn_flow.as_distribution(c[:1]).log_prob(x[:1])  # one point
    assert one.shape == (1,) and torch.isfinite(one).all()
    with pytest.raises(ValueError, match="more than one value"):
        bn_flow.log_prob(x[:1], c[:1])  # the training path needs a batch (kept so)
    reference = bn_flow.eval().log_prob(x, c)
    bn_flow.train()
    assert torch.allclose(d.log_prob(x), reference, atol=1e-5)
    assert torch.allclose(one, reference[:1], atol=1e-5)


def test_a_points_density_does_not_depend_on_the_others(bn_flow):
    torch.manual_seed(1)
    x, c = torch.randn(6, 2), torch.randn(6, 2)
    together = bn_flow.as_distribution(c).log_prob(x)
    moved = bn_flow.as_distribution(c[:3]).log_prob(torch.cat([x[:1], 10 * x[1:3]]))
    alone = torch.stack([bn_flow.as_distribution(c[i]).log_prob(x[i]) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(moved[0], together[0], atol=1e-5)


def test_the_view_changes_no_buffer_and_no_mode(bn_flow):
    before = _buffers(bn_flow)
    modes = {name: m.training for name, m in bn_flow.named_modules()}
    d = bn_flow.as_distribution(torch.randn(4, 2))
    d.log_prob(torch.randn(3, 4, 2))
    d.sample((5,))
    d.rsample_and_log_prob((5,))
    for name, b in _buffers(bn_flow).items():
        assert torch.equal(b, before[name]), name
    assert modes == {name: m.training for name, m in bn_flow.named_modules()}
    # the training path still uses the batch and updates the running statistics
    bn_flow.log_prob(torch.randn(16, 2) + 5, torch.randn(16, 2))
    assert any(not torch.equal(b, before[n]) for n, b in _buffers(bn_flow).items())


def test_the_view_restores_the_modes_after_an_error(bn_flow):
    d = bn_flow.as_distribution(torch.randn(3, 2), validate_args=False)
    bad = torch.randn(3, 2)
    bad[1, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite"):  # raised inside the view's call
        d.log_prob(bad)
    assert all(m.training for m in bn_flow.modules())


def test_sampled_log_densities_agree_with_the_view(bn_flow):
    torch.manual_seed(2)
    d = bn_flow.as_distribution(torch.randn(4, 2))
    x, log_p = d.rsample_and_log_prob((50,))
    assert torch.allclose(d.log_prob(x), log_p, atol=1e-4)


def test_data_dependent_starts_do_not_run_in_the_view():
    torch.manual_seed(0)
    for flow in (realnvp(2, couplings=2, hidden=(8,), glow=True), maf(2, base="mixture")):
        d = flow.as_distribution()
        x = torch.randn(32, 2) * 4
        first = d.log_prob(x)
        assert not any(bool(b) for n, b in flow.named_buffers() if n.endswith("initialized"))
        assert torch.allclose(d.log_prob(x[:1]), first[:1], atol=1e-5)
        flow.log_prob(x)  # training still starts them
        assert all(bool(b) for n, b in flow.named_buffers() if n.endswith("initialized"))


def test_batch_independent_covers_torch_norms_and_refuses_batch_only_ones():
    from flowforge.flows import batch_dependent_layers, batch_independent

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU())
    assert [name for name, _ in batch_dependent_layers(net)] == ["1"]
    stats = net[1].running_mean.clone()
    x = torch.randn(8, 2)
    with batch_independent(net):
        assert not net[1].training and net[0].training
        out = net(x)
        assert torch.allclose(net(x[:1]), out[:1], atol=1e-6)
    assert net[1].training and torch.equal(net[1].running_mean, stats)
    blind = torch.nn.Sequential(torch.nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(ValueError, match=r"'0' \(BatchNorm1d, track_running_stats=False\)"):
        with batch_independent(blind):
            pass
