"""Behaviour of the core transforms beyond the conformance kit: modes, domains, validation."""

import pytest
import torch

from flowforge.nn import MLP
from flowforge.transforms import (
    Affine,
    BatchNorm,
    Compose,
    Coupling,
    Inverse,
    InverseNotAvailable,
    Logit,
    LULinear,
    Permutation,
    Transform,
    alternating_mask,
    half_mask,
)


def test_batchnorm_uses_batch_stats_in_training_and_running_stats_in_eval():
    torch.manual_seed(0)
    bn = BatchNorm(3, momentum=1.0)
    x = torch.randn(256, 3) * 4 + 2
    z, _ = bn(x)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(3), atol=1e-3)
    bn.eval()
    y = torch.randn(5, 3)
    z1, l1 = bn(y)
    z2, _ = bn(y[:1])  # eval: no batch dependence
    assert torch.allclose(z1[:1], z2)
    x2, l2 = bn.inverse(z1)
    assert torch.allclose(x2, y, atol=1e-5) and torch.allclose(l1, -l2)


def test_batchnorm_running_stats_converge():
    bn = BatchNorm(2, momentum=0.1)
    for _ in range(100):
        bn(torch.randn(512, 2) * 3 + 1)
    assert torch.allclose(bn.running_mean, torch.ones(2), atol=0.2)
    assert torch.allclose(bn.running_var, torch.full((2,), 9.0), atol=1.0)


def test_logit_domain_errors_name_the_argument():
    with pytest.raises(ValueError, match="'x' should lie in"):
        Logit()(torch.tensor([[0.0, 0.5]]))
    z, ladj = Logit(alpha=0.05)(torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(z).all() and torch.isfinite(ladj).all()
    with pytest.raises(ValueError, match="alpha"):
        Logit(alpha=0.5)


def test_sigmoid_inverse_is_stable_for_large_inputs():
    x, ladj = Logit().inverse(torch.tensor([[-200.0, 200.0]]))
    assert torch.isfinite(ladj).all()


def test_permutation_validation():
    with pytest.raises(ValueError, match="'perm'"):
        Permutation(torch.tensor([0, 0, 1]))


def test_masks():
    assert alternating_mask(5).tolist() == [True, False, True, False, True]
    assert half_mask(4).tolist() == [True, True, False, False]
    assert half_mask(4, first=False).tolist() == [False, False, True, True]


def test_coupling_validation_and_identity_start():
    with pytest.raises(ValueError, match="'mask'"):
        Coupling(torch.ones(3, dtype=torch.bool), lambda a, b: MLP(a, b), Affine())
    c = Coupling(half_mask(4), lambda a, b: MLP(a, b), Affine())
    x = torch.randn(6, 4)
    z, ladj = c(x)
    assert torch.equal(z, x) and torch.equal(ladj, torch.zeros(6))


def test_coupling_leaves_conditioning_half_unchanged():
    c = Coupling(half_mask(4), lambda a, b: MLP(a, b, zero_init=False), Affine())
    x = torch.randn(6, 4)
    z, _ = c(x)
    assert torch.equal(z[:, :2], x[:, :2]) and not torch.allclose(z[:, 2:], x[:, 2:])


def test_mlp_requires_declared_context():
    net = MLP(2, 3, context_features=4)
    with pytest.raises(ValueError, match="context"):
        net(torch.randn(5, 2))
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 3, activation="nope")


def test_inverse_swaps_directions_and_cost_flags():
    class OneWay(Transform):
        fast_inverse = False

        def forward(self, x, context=None):
            return 2 * x, x.new_full((x.shape[0],), 0.0)

    t = Inverse(OneWay())
    assert t.fast_forward is False and t.fast_inverse is True
    with pytest.raises(InverseNotAvailable):
        t(torch.randn(2, 2))
    assert Compose([OneWay(), LULinear(2)]).fast_inverse is False


def test_lu_linear_weight_matches_ladj():
    t = LULinear(4)
    with torch.no_grad():
        t.log_diag.add_(0.3)
    _, ladj = t(torch.randn(2, 4))
    assert torch.allclose(ladj, torch.linalg.slogdet(t.weight())[1].expand(2), atol=1e-5)
