"""The conformance kit must fail on broken transforms: a kit that cannot fail proves nothing."""

import torch
from torch import nn

from flowforge.distributions import StandardNormal
from flowforge.flows import Flow
from flowforge.testing import check_flow_2d, check_transform
from flowforge.transforms import ElementwiseAffine, Transform


def failed(results):
    return {r.name for r in results if not r.passed}


class WrongLogDet(ElementwiseAffine):
    """Correct map, ladj off by a factor of 2 in the forward direction."""

    def forward(self, x, context=None):
        z, ladj = super().forward(x, context)
        return z, 2 * ladj


class WrongInverse(ElementwiseAffine):
    """Inverse forgets the shift."""

    def inverse(self, z, context=None):
        x = z * torch.exp(-self.log_scale)
        return x, (-self.log_scale.sum()).expand(z.shape[0])


class DeadParameter(ElementwiseAffine):
    def __init__(self, features):
        super().__init__(features)
        self.unused = nn.Parameter(torch.zeros(features))


class ForgetfulBuffer(Transform):
    """A random rotation that is not saved in the state_dict (a plain attribute)."""

    def __init__(self):
        super().__init__()
        self.w = torch.linalg.qr(torch.randn(3, 3))[0]

    def forward(self, x, context=None):
        return x @ self.w.to(x).T, x.new_zeros(x.shape[0])

    def inverse(self, z, context=None):
        return z @ self.w.to(z), z.new_zeros(z.shape[0])


def x3():
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_correct_transform_passes():
    assert failed(check_transform(lambda: ElementwiseAffine(3), x3())) == set()


def test_wrong_log_det_is_caught():
    assert {"log_det", "inverse_log_det"} <= failed(check_transform(lambda: WrongLogDet(3), x3()))


def test_wrong_inverse_is_caught():
    assert "round_trip" in failed(check_transform(lambda: WrongInverse(3), x3()))


def test_parameter_without_gradient_is_caught():
    assert failed(check_transform(lambda: DeadParameter(3), x3())) == {"gradients"}


def test_unsaved_state_is_caught():
    assert "state_dict" in failed(check_transform(ForgetfulBuffer, x3()))


def test_density_check_catches_unnormalised_flow():
    class Doubled(Flow):
        def log_prob(self, x, context=None):
            return super().log_prob(x, context) + torch.log(torch.tensor(2.0))

    flow = Doubled(ElementwiseAffine(2), StandardNormal(2))
    assert failed(check_flow_2d(flow)) >= {"integrates_to_one", "samples_match_density"}


def test_density_check_catches_sampler_that_disagrees():
    class WrongSampler(Flow):
        def rsample(self, n, context=None, temperature=1.0):
            return super().rsample(n, context, temperature) * 2

    flow = WrongSampler(ElementwiseAffine(2), StandardNormal(2))
    assert failed(check_flow_2d(flow)) == {"samples_match_density"}
