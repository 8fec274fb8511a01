"""NADE's hand-written recurrence (forward and backward) against autograd through the plain
formula :math:`b_d + V_d^T \\sigma(c + \\sum_{j<d} x_j W_j)`."""

import torch

from flowforge.models.nade import NADE, _NADELogits


def plain_logits(nade: NADE, x: torch.Tensor) -> torch.Tensor:
    contrib = x.unsqueeze(-1) * nade.W  # (n, D, H)
    a = nade.c + torch.cumsum(contrib, 1) - contrib
    return torch.einsum("ndh,dh->nd", torch.sigmoid(a), nade.V) + nade.b


def test_logits_and_gradients_match_autograd_of_the_plain_formula():
    torch.manual_seed(0)
    nade = NADE(9, 6, init_scale=0.7).double()
    with torch.no_grad():
        nade.b.normal_()
        nade.c.normal_()
    x = (torch.rand(11, 9) < 0.4).double()
    weights = torch.randn(11, 9, dtype=torch.float64)
    grads = []
    for logits in (nade.logits, lambda x: plain_logits(nade, x)):
        nade.zero_grad()
        out = logits(x)
        (out * weights).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in nade.parameters()]))
    (ours, ours_grads), (plain, plain_grads) = grads
    torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)
    for g, h in zip(ours_grads, plain_grads, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


def test_gradcheck_of_the_hand_written_backward():
    torch.manual_seed(1)
    nade = NADE(5, 4, init_scale=0.5).double()
    x = (torch.rand(3, 5) < 0.5).double()
    inputs = tuple(p.detach().clone().requires_grad_() for p in nade.parameters())
    assert torch.autograd.gradcheck(lambda *p: _NADELogits.apply(x, *p), inputs)
