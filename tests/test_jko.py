"""The JKO scheme (``objective: jko``): each block's loss is the JKO formula computed here
independently, the movement term is the mean squared displacement, the schedule trains one
block at a time and leaves the others untouched, the log-determinant of a trained flow matches
its autograd Jacobian, a trained tiny JKO flow reaches the known NLL of a Gaussian with a map
near the optimal transport one, and what the scheme cannot train is refused in one line.
Resume, load, eval and sample run through tests/test_objectives.py (its ``jko`` case)."""

import math

import pytest
import torch
import yaml

from flowforge.cli import main
from flowforge.config import TrainConfig
from flowforge.data.registry import Splits
from flowforge.distributions import DiagonalNormal
from flowforge.flows import Flow
from flowforge.models import ffjord, realnvp
from flowforge.objectives import OBJECTIVES, ObjectiveError, Setting
from flowforge.objectives.jko import jko_blocks, transport_cost
from flowforge.testing import perturb_parameters
from flowforge.train.trainer import make_optimizer
from flowforge.transforms import Compose, Standardize
from flowforge.transforms.permutation import ReversePermutation

COV = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)


def gaussian_splits(n_train=4096, seed=1) -> Splits:
    """Draws of N(MEAN, COV) in float32."""
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(COV)

    def draw(n):
        return (MEAN + torch.randn(n, 2, generator=g, dtype=torch.float64) @ chol.T).float()

    return Splits(draw(n_train), draw(512), draw(2048))


def jko(data=None, steps=None, **options):
    options = {"step_size": 0.5, "steps_per_block": 10, **options}
    setting = Setting(
        seed=0,
        batch_size=64,
        eval_batch_size=512,
        device=torch.device("cpu"),
        data=gaussian_splits(256) if data is None else data,
        steps=steps,
    )
    return OBJECTIVES["jko"](setting, **options)


def cnf_stack(blocks=2, seed=0, **options) -> Flow:
    """A tiny stack of CNF blocks (two Euler steps each) moved away from the identity
    start."""
    torch.manual_seed(seed)
    options = {"method": "euler", "step_size": 0.25, "exact_train": True, **options}
    flow = ffjord(2, blocks=blocks, hidden=(8, 8), end_time=0.5, **options)
    perturb_parameters(flow, scale=0.3, seed=seed)
    return flow


def test_each_blocks_loss_is_the_jko_formula():
    """L_k = E[-log N(T_k(x_k)) - log|det J_{T_k}(x_k)|] + E|T_k(x_k) - x_k|^2 / (2 h_k), with
    x_k the rows pushed through blocks 1..k-1 and h_k = h rho^k, at a step inside block k."""
    flow = cnf_stack(blocks=3)
    objective = jko(step_size=0.3, step_growth=1.5, steps_per_block=10, steps=30)
    objective.check_model(flow)
    module = objective.training_module(flow)
    blocks = list(flow.transform.transforms)
    for k, step in ((0, 3), (1, 10), (2, 29)):
        x, block = objective.batch(step)
        assert int(block) == k
        torch.manual_seed(5)
        loss = objective.loss(module(x, block), flow, step)
        pushed = x
        for b in blocks[:k]:
            pushed = b(pushed)[0]
        z, ladj = blocks[k](pushed)
        h = 0.3 * 1.5**k
        neg_log_normal = 0.5 * z.pow(2).sum(1) + math.log(2 * math.pi)  # D = 2
        expected = (neg_log_normal - ladj).mean() + (z - pushed).pow(2).sum(1).mean() / (2 * h)
        assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6), (k, loss, expected)


def test_the_movement_term_is_the_mean_squared_displacement():
    flow = cnf_stack(blocks=2)
    objective = jko(steps=20)
    module = objective.training_module(flow)
    x, block = objective.batch(15)
    terms = module(x, block)
    with torch.no_grad():
        x1 = flow.transform.transforms[0](x)[0]
        moved = flow.transform.transforms[1](x1)[0] - x1
    assert torch.allclose(terms[:, 2], (moved**2).sum(1), rtol=1e-5, atol=1e-7)
    # with a huge step the penalty vanishes: the loss is the block's NLL terms alone
    loose = jko(step_size=1e12, steps=20)
    assert torch.allclose(loose.loss(terms, flow, 15), terms[:, :2].sum(1).mean())


def test_only_the_scheduled_block_trains_and_the_others_keep_their_values():
    """Through the trainer's optimiser (fused AdamW with weight decay): during block 1's steps
    block 0 gets no gradient and keeps its values, and block 1 is untouched before them."""
    flow = cnf_stack(blocks=2)
    objective = jko(steps=8, steps_per_block=4)
    module = objective.training_module(flow)
    train = TrainConfig(lr=1e-2, weight_decay=0.1)
    optimizer = make_optimizer(train, list(flow.parameters()), torch.device("cpu"))
    first, second = flow.transform.transforms

    def values(block):
        return [p.detach().clone() for p in block.parameters()]

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    second_at_start = values(second)
    for step in range(8):
        if step == 4:
            first_after_its_steps = values(first)
            assert same(values(second), second_at_start)
        optimizer.zero_grad(set_to_none=True)
        objective.loss(module(*objective.batch(step)), flow, step).backward()
        block = first if step < 4 else second
        other = second if step < 4 else first
        assert all(p.grad is None for p in other.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
        optimizer.step()
    assert same(values(first), first_after_its_steps)
    assert not same(values(second), second_at_start)


def test_the_log_det_of_a_jko_flow_matches_its_autograd_jacobian():
    flow = cnf_stack(blocks=2, method="dopri5", atol=1e-9, rtol=1e-9).double().eval()
    x = torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        _, ladj = flow.transform(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow.transform(v[None])[0][0], x[i])
        assert torch.allclose(ladj[i], torch.linalg.slogdet(jac)[1], atol=1e-6)


def test_the_transport_cost_is_the_mean_squared_displacement_of_the_whole_map():
    flow = cnf_stack(blocks=2).eval()
    x = torch.randn(50, 2)
    with torch.no_grad():
        z = flow.transform(x)[0]
    cost = transport_cost(flow, x, batch_size=16)
    assert cost.dtype == torch.float64 and cost.shape == (50,)
    assert torch.allclose(cost, (z - x).pow(2).sum(1).double(), rtol=1e-5)


def test_a_fixed_front_is_applied_first_and_every_other_transform_is_a_block():
    flow = cnf_stack(blocks=2)
    front = Standardize(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    wrapped = Flow(Compose([front, flow.transform]), flow.base)
    fixed, blocks = jko_blocks(wrapped)
    assert fixed == [front] and blocks == list(flow.transform.transforms)
    module = jko(steps=20).training_module(wrapped)
    x = torch.randn(8, 2)
    with torch.no_grad():
        z, ladj = blocks[0](front(x)[0])
    terms = module(x, torch.tensor(0))
    assert torch.allclose(terms[:, 1], -ladj, atol=1e-6)


def test_a_flow_the_scheme_cannot_train_is_refused():
    stack = cnf_stack()
    for transforms, base, match in [
        ([ReversePermutation(2)], stack.base, "no trainable transform"),
        ([stack.transform.transforms[0], ReversePermutation(2)], stack.base, "no JKO step"),
        (list(stack.transform.transforms), DiagonalNormal(2), "fixed base"),
    ]:
        with pytest.raises(ObjectiveError, match=match):
            jko(steps=20).check_model(Flow(Compose(transforms), base))


def test_the_schedule_must_fill_the_run_and_options_are_checked():
    with pytest.raises(ObjectiveError, match="set train.steps to 20, not 25"):
        jko(steps=25).check_model(cnf_stack(blocks=2))
    jko(steps=40, steps_per_block=10).check_model(realnvp(2, couplings=4, hidden=(8,)))
    for bad, match in [
        ({"step_size": 0}, "step_size"),
        ({"step_size": math.inf}, "step_size"),
        ({"steps_per_block": 0}, "steps_per_block"),
        ({"steps_per_block": 2.5}, "steps_per_block"),
        ({"step_growth": -1.0}, "step_growth"),
    ]:
        with pytest.raises(ObjectiveError, match=match):
            jko(**bad)
    data = gaussian_splits(64)
    data.train_context = torch.zeros(64, 1)
    with pytest.raises(ObjectiveError, match="context"):
        jko(data=data)


def test_a_schedule_that_does_not_fill_train_steps_is_one_line(tmp_path, capsys):
    config = {
        "name": "mismatch",
        "output_dir": str(tmp_path),
        "data": {"name": "moons", "n_train": 128, "n_val": 32, "n_test": 32},
        "model": {"name": "ffjord", "blocks": 2, "hidden": [8], "method": "rk4", "step_size": 0.5},
        "objective": {"name": "jko", "step_size": 0.5, "steps_per_block": 5},
        "train": {"steps": 12},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "train.steps to 10" in err[0]
    assert not (tmp_path / "mismatch").exists()


@pytest.mark.slow
def test_a_trained_jko_flow_reaches_a_gaussians_nll_with_a_near_optimal_map():
    """Three CNF blocks, 150 steps each, on N(m, S) in 2-D: the test NLL within 0.03 nats of
    the true density's on the same points, and the transport cost of the learned map within
    10 % of W_2^2(N(m, S), N(0, I)) = |m|^2 + tr(S + I - 2 S^(1/2)), the optimal map's."""
    torch.manual_seed(0)
    data = gaussian_splits()
    objective = jko(data, steps=450, step_size=1.0, step_growth=2.0, steps_per_block=150)
    objective.setting.batch_size, objective.setting.eval_batch_size = 256, 2048
    flow = ffjord(
        2, blocks=3, hidden=(16, 16), end_time=1.0, method="rk4", step_size=0.5, exact_train=True
    )
    objective.check_model(flow)
    optimizer = make_optimizer(TrainConfig(lr=1e-2), list(flow.parameters()), torch.device("cpu"))
    module = objective.training_module(flow)
    for step in range(450):
        optimizer.zero_grad(set_to_none=True)
        objective.loss(module(*objective.batch(step)), flow, step).backward()
        optimizer.step()
    scores = objective.scores(flow)
    true = torch.distributions.MultivariateNormal(MEAN, COV)
    true_nll = -true.log_prob(data.test.double()).mean().item()
    assert abs(scores["test_nll"] - true_nll) < 0.03, (scores["test_nll"], true_nll)
    e, v = torch.linalg.eigh(COV)
    w2 = (MEAN.pow(2).sum() + COV.trace() + 2 - 2 * (v @ torch.diag(e.sqrt()) @ v.T).trace()).item()
    assert abs(scores["test_transport"] - w2) < 0.1 * w2, (scores["test_transport"], w2)
    moved = scores["test_block_transport"]
    assert len(moved) == 3 and moved[0] > moved[1] > moved[2]  # the steps shrink to the base


@pytest.mark.parametrize("name", ["toy/jko-8gaussians.yaml", "residual/jko-gmm8.yaml"])
def test_the_shipped_jko_configs_fill_their_schedule(name):
    """Their flow's blocks times steps_per_block is their train.steps (checked on a few rows)."""
    from pathlib import Path

    from flowforge.config import load_config
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec

    cfg = load_config(Path(__file__).parents[1] / "configs" / name)
    cfg.data.n_train, cfg.data.n_val, cfg.data.n_test = 64, 16, 16
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    objective.check_model(build_from_spec(model_spec(cfg, objective)))
