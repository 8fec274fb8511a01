"""The baselines of docs/comparison.md (GAN, WGAN, WGAN-GP, RBM by CD/PCD, NADE) through the
one trainer: resume bit-identical, eval prints the summary's numbers, load and sample without
the data set; the trainer updates only the objective's parameters and the objective's own
state survives a resume; the RBM's AIS agrees with exact enumeration."""

import json
import signal

import numpy as np
import pytest
import torch
import yaml

import flowforge
from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.models.rbm import RBM
from flowforge.runs import train_run
from flowforge.train.checkpoint import load_checkpoint
from flowforge.train.trainer import Trainer
from helpers import (
    assert_loads_and_samples_without_data,
    cli_process,
    final_parameters,
    kill_after,
    metrics_without_time,
)

GAUSSIANS = {"name": "8gaussians", "n_train": 1024, "n_val": 256, "n_test": 256}
MNIST = {"name": "binarized_mnist", "n_train": 512, "n_val": 64, "n_test": 64}
GAN_MODEL = {"name": "gan", "latent": 2, "hidden": [16, 16]}
SCORES = {"val_n": 128, "eval_n": 256}
CASES = {
    "gan": {"objective": {"name": "gan", **SCORES}, "data": GAUSSIANS, "model": GAN_MODEL},
    "wgan": {
        "objective": {"name": "wgan", "n_critic": 2, **SCORES},
        "data": GAUSSIANS,
        "model": GAN_MODEL,
    },
    "wgan_gp": {
        "objective": {"name": "wgan_gp", "n_critic": 2, **SCORES},
        "data": GAUSSIANS,
        "model": GAN_MODEL,
    },
    "cd": {
        "objective": {"name": "cd", "k": 1, "eval_chains": 8, "eval_betas": 50, "eval_n": 32},
        "data": MNIST,
        "model": {"name": "rbm", "hidden": 16, "sample_steps": 5},
    },
    "pcd": {
        "objective": {
            "name": "cd",
            "k": 2,
            "persistent": True,
            "eval_chains": 8,
            "eval_betas": 50,
            "eval_n": 32,
        },
        "data": MNIST,
        "model": {"name": "rbm", "hidden": 16, "sample_steps": 5},
    },
    "dcgan": {
        "objective": {"name": "wgan_gp", "n_critic": 1, "val_n": 64, "eval_n": 64},
        "data": MNIST,
        "model": {
            "name": "gan",
            "latent": 8,
            "architecture": "dcgan",
            "channels": [2, 4],
            "output": "sigmoid",
        },
    },
    "nade": {
        "objective": {"name": "likelihood"},
        "data": MNIST,
        "model": {"name": "nade", "hidden": 8},
    },
}
NAMES = list(CASES)


def config(case: str, steps: int = 40) -> dict:
    train = {"steps": steps, "batch_size": 32, "eval_every": 5, "lr": 1e-3}
    return {"name": case, "train": train, **CASES[case]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    if not flowforge.data.binarized_mnist.DEFAULT_PATH.is_file():
        pytest.skip("binarized MNIST not found in the shared data folder")
    root = tmp_path_factory.mktemp("finished")
    runs = {}
    for name in NAMES:
        cfg = parse_config({**config(name), "output_dir": str(root)})
        runs[name] = train_run(cfg, progress=False, plots=False)
    return runs


@pytest.mark.parametrize("case", NAMES)
def test_a_run_stopped_and_resumed_ends_bit_identical(case, finished, tmp_path, monkeypatch):
    cfg = parse_config({**config(case), "output_dir": str(tmp_path)})
    monkeypatch.setattr(Trainer, "elapsed", lambda self: float(self.progress.step))
    cfg.train.max_seconds = 17
    cut = train_run(cfg, progress=False, plots=False)
    assert cut.summary["steps"] == 17
    monkeypatch.undo()
    resumed = train_run(
        resume=cut.run_dir, overrides=["train.max_seconds=0"], progress=False, plots=False
    )
    whole = finished[case]
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the objective's own state (critic optimiser, persistent chains) ends equal too
    sa = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")["objective_state"]
    sb = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["objective_state"]
    assert _equal(sa, sb)

    def comparable(records):
        out = [r for r in records if r.get("step") != 17 and "event" not in r]
        return [
            {k: v for k, v in r.items() if not (r["step"] == 20 and k.startswith("train_"))}
            for r in out
        ]

    assert comparable(metrics_without_time(resumed.run_dir)) == comparable(
        metrics_without_time(whole.run_dir)
    )


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_objectives_state_is_in_the_checkpoint(finished):
    """The critic's optimiser (GANs) and the persistent chains (PCD) are saved; CD keeps none."""
    state = {
        name: load_checkpoint(finished[name].run_dir / "checkpoints" / "last.pt")["objective_state"]
        for name in ("gan", "wgan_gp", "pcd", "cd", "nade")
    }
    assert state["gan"]["critic_optimizer"]["state"]  # Adam's moments after 40 steps
    assert state["wgan_gp"]["critic_optimizer"]["param_groups"][0]["betas"] == (0.0, 0.9)
    assert state["pcd"]["chains"].shape == (32, 784)
    assert state["cd"] == {} and state["nade"] == {}


@pytest.mark.parametrize("case", ["gan", "wgan", "wgan_gp"])
def test_the_trainer_updates_only_the_objectives_parameters(case, tmp_path):
    """The trainer's AdamW holds the generator's parameters; the critic moves by the objective's
    own optimiser (n_critic updates per step)."""
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec
    from flowforge.runs.directory import RunDirectory

    cfg = parse_config({**config(case, steps=3), "output_dir": str(tmp_path)})
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    model = build_from_spec(model_spec(cfg, objective))
    trainer = Trainer(cfg, objective, model, RunDirectory.create(tmp_path, "t"), {})
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.generator.parameters()}
    critic_before = [p.detach().clone() for p in model.critic.parameters()]
    generator_before = [p.detach().clone() for p in model.generator.parameters()]
    seen = []
    original = objective.update_critic
    objective.update_critic = lambda gan, real: (seen.append(1), original(gan, real))
    trainer.train_module = objective.training_module(model)
    objective.update_critic = original
    loss, diverged = trainer.train_step()
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


@pytest.mark.parametrize("case", NAMES)
def test_load_and_sample_need_no_data(case, finished, monkeypatch, tmp_path, capsys):
    assert_loads_and_samples_without_data(finished[case].run_dir, monkeypatch, tmp_path)


@pytest.mark.parametrize("case", NAMES)
def test_eval_prints_the_summarys_numbers(case, finished, capsys):
    run = finished[case]
    assert main(["eval", str(run.run_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    shared = set(out) & set(summary) - {"run", "split"}
    assert shared and all(out[k] == summary[k] for k in shared)
    key = "test_mmd" if case in ("gan", "wgan", "wgan_gp", "dcgan") else "test_nll"
    assert np.isfinite(summary[key])


def test_wgan_clips_the_critic(finished):
    from flowforge.train.checkpoint import load_checkpoint as load

    state = load(finished["wgan"].run_dir / "checkpoints" / "last.pt")["model"]
    critic = [v for k, v in state.items() if k.startswith("critic.")]
    assert critic and all(float(v.abs().max()) <= 0.01 + 1e-7 for v in critic)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wgan_gp", "pcd"])
def test_sigkill_then_resume_is_bit_identical(case, finished, tmp_path):
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(config(case)))
    whole = cli_process("train", str(path), "--quiet", "--set", "name=whole", cwd=tmp_path)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    run_dir = tmp_path / "runs" / "cut"
    proc = cli_process("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path)
    kill_after(proc, run_dir, 3, signal.SIGKILL)
    resumed = cli_process("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    a, b = final_parameters(tmp_path / "runs" / "whole"), final_parameters(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_without_time(run_dir) == metrics_without_time(tmp_path / "runs" / "whole")


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


def test_a_failed_critic_update_makes_the_step_bad(tmp_path):
    """A non-finite critic loss skips the critic's update and makes the generator's loss NaN,
    so the trainer's rollback machinery sees it."""
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec

    cfg = parse_config({**config("gan", steps=3), "output_dir": str(tmp_path)})
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    model = build_from_spec(model_spec(cfg, objective))
    module = objective.training_module(model)
    (real,) = objective.batch(0)
    before = [p.detach().clone() for p in model.critic.parameters()]
    scores = module(real * float("nan"))
    assert all(torch.equal(a, p) for a, p in zip(before, model.critic.parameters(), strict=True))
    assert torch.isnan(objective.loss(scores, model, 0))
    assert torch.isfinite(objective.loss(module(real), model, 1))
