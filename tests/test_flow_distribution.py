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
