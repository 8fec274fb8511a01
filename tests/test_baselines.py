"""The baselines of docs/comparison.md (GAN, WGAN, WGAN-GP, RBM by CD/PCD, NADE), their own
mechanics: the trainer updates only the objective's parameters while the objective updates the
critic in its own steps; a failed critic update makes the step bad under its name, and
``train.compile`` is refused; the RBM's AIS agrees with exact
enumeration, its Gibbs chains with the exact distribution, the CD surrogate has the CD
gradient; NADE is normalised. The checks every objective shares (resume bit-identical, eval,
load and sample without data, the objective's state in the checkpoint) are
tests/test_objectives.py's, over the same tiny cases (helpers.CASES)."""

import pytest
import torch

from flowforge.config import parse_config
from flowforge.models.rbm import RBM
from flowforge.train.trainer import Trainer
from helpers import case_config


@pytest.mark.parametrize("case", ["gan", "wgan", "wgan_gp"])
def test_the_trainer_updates_only_the_objectives_parameters(case, tmp_path):
    """The trainer's AdamW holds the generator's parameters; the critic moves by the objective's
    own optimiser in its own steps (n_critic updates per step, called by the trainer)."""
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec
    from flowforge.runs.directory import RunDirectory

    cfg = parse_config({**case_config(case, steps=3), "output_dir": str(tmp_path)})
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    model = build_from_spec(model_spec(cfg, objective))
    trainer = Trainer(cfg, objective, model, RunDirectory.create(tmp_path, "t"), {})
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.generator.parameters()}
    critic_before = [p.detach().clone() for p in model.critic.parameters()]
    generator_before = [p.detach().clone() for p in model.generator.parameters()]
    seen = []
    original = objective.update_critic
    objective.update_critic = lambda gan, real: (seen.append(1), original(gan, real))[1]
    loss, diverged = trainer.train_step()
    objective.update_critic = original
    assert diverged is None
    assert len(seen) == objective.n_critic
    # every critic weight moved (a WGAN critic's output bias has zero gradient: E D(x) - E D(G(z)))
    moved = [
        not torch.equal(a, p) for a, p in zip(critic_before, model.critic.parameters(), strict=True)
    ]
    names = [n for n, _ in model.critic.named_parameters()]
    assert all(m for m, n in zip(moved, names, strict=True) if n.endswith("weight"))
    assert all(
        not torch.equal(a, p)
        for a, p in zip(generator_before, model.generator.parameters(), strict=True)
    )
    assert set(trainer.optimizer.state) <= set(model.generator.parameters())


def _random_rbm(seed: int, scale: float) -> RBM:
    torch.manual_seed(seed)
    rbm = RBM(12, 8, init_scale=scale)
    with torch.no_grad():
        rbm.visible_bias.normal_(0, scale)
        rbm.hidden_bias.normal_(0, scale)
    return rbm


def test_exact_log_z_enumerates_either_layer():
    """Summing out the visible or the hidden units gives the same log Z (the RBM transposed)."""
    rbm = _random_rbm(0, 1.0)
    t = RBM(8, 12)
    with torch.no_grad():
        t.weight.copy_(rbm.weight.T)
        t.visible_bias.copy_(rbm.hidden_bias)
        t.hidden_bias.copy_(rbm.visible_bias)
    assert abs(rbm.log_z_exact() - t.log_z_exact()) < 1e-9


@pytest.mark.parametrize("seed, scale", [(0, 0.5), (1, 1.0), (2, 1.5)])
def test_ais_log_z_is_within_three_standard_errors_of_the_exact_one(seed, scale):
    """12 visible x 8 hidden units with random weights: AIS (100 chains, 1000 steps of the
    paper's schedule) lands within 3 standard errors of log Z by enumeration."""
    rbm = _random_rbm(seed, scale)
    exact = rbm.log_z_exact()
    torch.manual_seed(100 + seed)
    ais = rbm.ais(chains=100, betas=1000)
    assert abs(ais.log_z - exact) <= 3 * ais.stderr, (ais.log_z, exact, ais.stderr)
    assert ais.log_z_low <= exact <= ais.log_z_high
    assert 0 < ais.stderr < 0.2


def test_rbm_gibbs_samples_follow_the_exact_distribution():
    """Long Gibbs chains of a tiny RBM visit the visible states with their exact probabilities."""
    import itertools

    torch.manual_seed(0)
    rbm = RBM(3, 2, init_scale=1.0)
    states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)))
    with torch.no_grad():
        p = torch.softmax(-rbm.free_energy(states), 0)
        v = torch.bernoulli(torch.full((4000, 3), 0.5))
        v, _ = rbm.gibbs(v, 50)
    freq = torch.stack([(v == s).all(1).float().mean() for s in states])
    assert torch.allclose(freq, p, atol=0.03)


def test_the_cd_surrogate_has_the_cd_gradient():
    """d/dW [mean F(v) - mean F(v~)] = -(<p(h|v) v^T>_data - <p(h|v~) v~^T>_model)."""
    torch.manual_seed(0)
    rbm = RBM(6, 4, init_scale=0.5)
    v = torch.bernoulli(torch.full((10, 6), 0.3))
    neg = torch.bernoulli(torch.full((10, 6), 0.6))
    (rbm.free_energy(v).mean() - rbm.free_energy(neg).mean()).backward()
    with torch.no_grad():
        expected = -(rbm.hidden_probs(v).T @ v - rbm.hidden_probs(neg).T @ neg) / 10
    assert torch.allclose(rbm.weight.grad, expected, atol=1e-6)


def test_nade_is_normalised_and_samples_from_its_density():
    import itertools

    from flowforge.models.nade import NADE

    torch.manual_seed(0)
    nade = NADE(5, 7, init_scale=1.0)
    with torch.no_grad():
        nade.b.normal_()
        nade.c.normal_()
        states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=5)))
        log_p = nade.log_prob(states)
        assert abs(float(torch.logsumexp(log_p, 0))) < 1e-5
        x = nade.sample(20000)
    freq = torch.stack([(x == s).all(1).float().mean() for s in states])
    assert torch.allclose(freq, log_p.exp(), atol=0.01)


def test_a_failed_critic_update_is_a_named_bad_step(tmp_path):
    """A non-finite critic loss skips the critic's update and raises StepFailed naming it;
    the trainer counts the step as bad under that name, before the generator moves (so its
    rollback machinery sees it), and the next good step goes through."""
    from flowforge.objectives import StepFailed
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec
    from flowforge.runs.directory import RunDirectory

    cfg = parse_config({**case_config("wgan", steps=3), "output_dir": str(tmp_path)})
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    model = build_from_spec(model_spec(cfg, objective))
    trainer = Trainer(cfg, objective, model, RunDirectory.create(tmp_path, "t"), {})
    (real,) = objective.batch(0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(StepFailed, match=r"^critic loss \(critic update 1 of 2\)$"):
        objective.own_steps(model, (real * float("nan"),), 0)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    good = objective.batch
    objective.batch = lambda step: (good(step)[0] * float("nan"),)
    loss, diverged = trainer.train_step()
    assert diverged == "critic loss (critic update 1 of 2)"
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    objective.batch = good
    loss, diverged = trainer.train_step()
    assert diverged is None and loss == loss


def test_compile_is_refused_for_an_objective_with_its_own_steps(tmp_path):
    """``train.compile`` cannot include the critic's updates: refused by name."""
    from flowforge.config import ConfigError
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec
    from flowforge.runs.directory import RunDirectory

    raw = case_config("gan", steps=3)
    raw["train"] = {**raw.get("train", {}), "compile": True}
    cfg = parse_config({**raw, "output_dir": str(tmp_path)})
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    model = build_from_spec(model_spec(cfg, objective))
    with pytest.raises(ConfigError, match="train.compile: objective 'gan' takes steps of its own"):
        Trainer(cfg, objective, model, RunDirectory.create(tmp_path, "t"), {})


def test_the_uniform_importance_sampling_log_z_matches_the_exact_one():
    """The second estimate of log Z (uniform proposal) on an RBM small enough to enumerate."""
    rbm = _random_rbm(0, 0.5)
    torch.manual_seed(1)
    assert abs(rbm.log_z_uniform(200_000) - rbm.log_z_exact()) < 0.02


def test_an_ais_estimate_that_missed_mass_is_named_and_not_used():
    """When the uniform estimate of log Z lies above AIS's 3-sigma interval (AIS's chains,
    started at the data's base rates, missed mass), the NLL comes from the larger estimate,
    the summary says so and a warning is given; otherwise AIS's numbers stand."""
    from flowforge.objectives.rbm import nll_summary

    rbm = _random_rbm(1, 1.0)
    torch.manual_seed(2)
    ais = rbm.ais(chains=100, betas=1000)
    f = rbm.free_energy(torch.bernoulli(torch.full((50, 12), 0.3))).detach().double()
    exact = rbm.log_z_exact()
    honest = nll_summary("test", f, ais, exact)
    assert not honest["ais_missed_mass"]
    assert honest["test_nll"] == pytest.approx(float(f.mean()) + ais.log_z)
    with pytest.warns(UserWarning, match="missed mass"):
        missed = nll_summary("test", f, ais, ais.log_z_high + 5.0)
    assert missed["ais_missed_mass"]
    assert missed["test_nll"] == pytest.approx(float(f.mean()) + ais.log_z_high + 5.0)
    assert missed["test_nll_low"] is None and missed["test_nll_high"] is None
