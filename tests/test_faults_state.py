"""Hostile state inside a well-formed checkpoint (issue 30, items 1 and 4): every objective's own
state, the training counters, the identity keys and the model spec.

Each case edits one field of a tiny run's ``last.pt`` (or ``best.pt``), written back with
``torch.save`` as an attacker or a damaged copy would (``save_checkpoint`` refuses some of these
files), then runs the CLI: one line ``error: ...`` naming the field, exit 2, the run directory
byte for byte unchanged.
"""

import copy
import shutil
import time

import pytest
import torch

from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.objectives import OBJECTIVES
from flowforge.runs import train_run
from flowforge.train.checkpoint import load_checkpoint
from helpers import case_config, train_teacher

#: one case per objective (``pcd``: ``cd`` with persistent chains, the one with tensor state)
CASES = ["mle", "elbo", "iwae", "reverse_kl", "distill", "gan", "wgan", "wgan_gp", "cd", "pcd"]
CASES += ["dbm", "nade", "jko"]  # nade: the ``likelihood`` objective
MNIST_CASES = ("cd", "pcd", "dbm", "nade")


def test_every_objective_has_a_case():
    names = {case_config(c).get("objective", {"name": "mle"})["name"] for c in CASES}
    assert names == set(OBJECTIVES)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return train_teacher(tmp_path_factory.mktemp("teacher"), 10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, teacher):
    """``case -> run directory`` of a finished 4-step run, trained on first use."""
    root, done = tmp_path_factory.mktemp("runs"), {}

    def get(case):
        if case not in done:
            if case in MNIST_CASES:
                import flowforge.data.binarized_mnist as mnist

                if not mnist.DEFAULT_PATH.is_file():
                    pytest.skip("binarized MNIST not found in the shared data folder")
            raw = case_config(case, teacher, steps=4)
            raw["train"]["eval_every"] = 2
            raw["output_dir"] = str(root)
            done[case] = train_run(parse_config(raw), progress=False, plots=False).run_dir
        return done[case]

    return get


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def refused(argv, run_dir, capsys, message):
    """``flowforge ARGV`` exits 2 with one line naming ``message`` and changes nothing."""
    before = snapshot(run_dir)
    status = main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in err, err
    assert snapshot(run_dir) == before  # nothing rewritten, nothing removed
    return err


def edited_copy(run_dir, tmp_path, edit, name="last.pt"):
    """A copy of the run whose checkpoint ``name`` went through ``edit(payload)``."""
    copied = tmp_path / "run"
    shutil.copytree(run_dir, copied)
    path = copied / "checkpoints" / name
    payload = load_checkpoint(path)
    edit(payload)
    torch.save(payload, path)
    return copied


def _moments(tree, where=()):
    """``(keys, tensor)`` of every floating tensor in a state tree (an optimiser's ``step``
    counts left out)."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point() and where[-1] != "step":
            yield where, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _moments(v, (*where, k))


HOSTILE = {
    "short": lambda t: torch.zeros(2, dtype=t.dtype),
    "empty": lambda t: torch.zeros(0, dtype=t.dtype),
    "nan": lambda t: torch.full_like(t, float("nan")),
    "wrong_dtype": lambda t: t.double(),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.parametrize("case", CASES)
def test_a_hostile_objective_state_is_refused_by_name(tmp_path, runs, case, kind, capsys):
    """Every tensor of an objective's own state (the critics' Adam and RMSprop moments, PCD's
    chains) replaced by a short, empty, NaN or float64 one; an objective that keeps no state
    is given one. Before: the GAN critic's short moments crashed the fused Adam step (SIGSEGV,
    heap corruption), NaN chains gave a torch traceback."""
    run_dir = runs(case)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt").get("objective_state", {})
    moments = list(_moments(state))
    assert bool(moments) == (case in ("gan", "wgan", "wgan_gp", "pcd"))

    def edit(payload):
        for where, t in moments:
            node = payload["objective_state"]
            for k in where[:-1]:
                node = node[k]
            node[where[-1]] = HOSTILE[kind](t)
        if not moments:
            payload["objective_state"] = {"state": HOSTILE[kind](torch.ones(3))}

    copied = edited_copy(run_dir, tmp_path, edit)
    message = "objective state" if moments else "objective state holds unexpected keys ['state']"
    refused(["train", "--quiet", "--resume", str(copied)], copied, capsys, message)


def test_a_hostile_rbm_chain_of_another_kind_is_named(tmp_path, runs, capsys):
    """An int where PCD keeps its chains (before: an AttributeError traceback)."""
    copied = edited_copy(runs("pcd"), tmp_path, lambda p: p["objective_state"].update(chains=3))
    refused(
        ["train", "--quiet", "--resume", str(copied)],
        copied,
        capsys,
        "objective state 'chains' is a int, not a dense tensor",
    )


def test_the_critics_moments_are_named_with_their_parameter(tmp_path, runs, capsys):
    def edit(payload):
        entry = payload["objective_state"]["critic_optimizer"]["state"][0]
        entry["exp_avg"] = torch.zeros(2)

    copied = edited_copy(runs("gan"), tmp_path, edit)
    refused(
        ["train", "--quiet", "--resume", str(copied)],
        copied,
        capsys,
        "objective state 'critic_optimizer': optimiser state of parameter 0 'exp_avg' "
        "has shape (2,)",
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["rng"].update(torch=p["rng"]["torch"][:10]), "random state 'rng' 'torch'"),
        (lambda p: p["rng"].update(torch=p["rng"]["torch"].float()), "dtype torch.float32"),
        (lambda p: p.update(rng=[1, 2]), "random state 'rng' is a list"),
        (lambda p: p.update(rng_ranks=[{"torch": torch.zeros(3)}]), "random state of rank 0"),
    ],
)
def test_a_hostile_random_state_is_refused_by_name(tmp_path, runs, edit, message, capsys):
    copied = edited_copy(runs("mle"), tmp_path, edit)
    refused(["train", "--quiet", "--resume", str(copied)], copied, capsys, message)


# -- the training counters --------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("step", 2.0, "'step' is 2.0, not an int"),
        ("step", "2", "'step' is '2', not an int"),
        ("step", True, "'step' is True, not an int"),
        ("step", 10**9, "'step' is 1000000000, outside [0, 4]"),
        ("step", -1, "'step' is -1, outside [0, 4]"),
        ("best_val", float("nan"), "'best_val' is nan"),
        ("best_val", -float("inf"), "'best_val' is -inf"),
        ("best_val", "0.5", "'best_val' is '0.5', not a number"),
        ("evals_since_best", 10**6, "'evals_since_best' is 1000000, outside [0, 5]"),
        ("loss_n", 7, "'loss_n' is 7, outside [0, 4]"),
        ("rollbacks", 1, "'lr_scale' is 1.0, but 1 rollbacks make it 0.5"),
        ("lr_scale", 0.3, "'lr_scale' is 0.3, but 0 rollbacks make it 1.0"),
        ("elapsed", float("inf"), "'elapsed' is inf"),
        ("elapsed", -2.0, "'elapsed' is -2.0, below 0"),
        ("loss_sum", float("nan"), "'loss_sum' is nan"),
    ],
)
def test_a_training_counter_of_another_type_or_out_of_range_is_refused(
    tmp_path, runs, field, value, message, capsys
):
    """Before: a float, string or 10**9 step was taken (the summary said "1000000000 steps in
    7.9 s"), and so was a NaN or -inf best validation score."""
    copied = edited_copy(runs("mle"), tmp_path, lambda p: p.update({field: value}))
    refused(["train", "--quiet", "--resume", str(copied)], copied, capsys, message)


def test_a_step_within_the_writing_runs_steps_resumes(tmp_path, runs):
    """The bound is the ``train.steps`` of the run that wrote the checkpoint: a resume that
    lowers ``train.steps`` below the step reached is not refused for it."""
    copied = tmp_path / "run"
    shutil.copytree(runs("mle"), copied)
    assert main(["train", "--quiet", "--resume", str(copied), "--set", "train.steps=2"]) == 0


# -- the identity keys ------------------------------------------------------------------------
@pytest.mark.parametrize("keys", [("spec", "objective", "fingerprint"), ("fingerprint",)])
def test_a_checkpoint_without_its_identity_is_refused_unless_accepted(tmp_path, runs, keys, capsys):
    """Before: a same-architecture ``last.pt`` of another run was taken once its identity keys
    were removed, and replaced the history."""

    def edit(payload):
        for key in keys:
            del payload[key]

    copied = edited_copy(runs("mle"), tmp_path, edit)
    err = refused(
        ["train", "--quiet", "--resume", str(copied)], copied, capsys, "--accept-unidentified"
    )
    assert f"does not record its {', '.join(keys)}" in err
    argv = ["train", "--quiet", "--resume", str(copied), "--accept-unidentified"]
    assert main([*argv, "--set", "train.steps=6"]) == 0
    assert load_checkpoint(copied / "checkpoints" / "last.pt")["step"] == 6


def test_accept_unidentified_goes_with_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--accept-unidentified"]) == 2
    assert "error: --accept-unidentified goes with --resume" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# -- the model spec ---------------------------------------------------------------------------
def _huge_layer(payload):
    payload["spec"]["options"]["hidden"] = [40000, 40000]


def _spec_list(payload):
    payload["spec"] = ["maf"]


def _wider_layer(payload):
    payload["spec"]["options"]["hidden"] = [24]


SPECS = {
    "huge_layer": (_huge_layer, "asks for more than"),
    "list": (_spec_list, "model spec is a list"),
    "wider_layer": (_wider_layer, "has shape"),
}


@pytest.fixture(scope="module")
def maf_run(tmp_path_factory):
    cfg = parse_config(
        {
            "name": "maf",
            "output_dir": str(tmp_path_factory.mktemp("maf")),
            "data": {"name": "moons", "n_train": 256, "n_val": 64, "n_test": 64},
            "model": {"name": "maf", "layers": 2, "hidden": [16], "batch_norm": False},
            "train": {"steps": 2, "batch_size": 32, "eval_every": 2},
        }
    )
    return train_run(cfg, progress=False, plots=False).run_dir


@pytest.mark.parametrize("command", ["eval", "sample"])
@pytest.mark.parametrize("spec", list(SPECS))
def test_a_spec_that_does_not_fit_the_stored_weights_is_refused(
    tmp_path, maf_run, spec, command, capsys
):
    """A ``best.pt`` whose spec asks for two 40000-unit layers (before: ``eval`` and
    ``sample`` allocated 6.4 GB and failed with a traceback) is refused without allocating
    them; a spec that is no mapping, or of another width, by name."""
    edit, message = SPECS[spec]
    copied = edited_copy(maf_run, tmp_path, edit, name="best.pt")
    argv = [command, str(copied)]
    if command == "sample":
        argv += ["-n", "5", "--out", str(tmp_path / "s.csv")]
    began = time.perf_counter()
    refused(argv, copied, capsys, message)
    assert time.perf_counter() - began < 10  # nothing of 6.4 GB was written
    assert not (tmp_path / "s.csv").exists()


def test_the_spec_budget_refuses_before_allocating():
    """The two 40000-unit layers are refused before the first of them is allocated: the
    process's peak memory grows by far less than one layer (1.6 GB in float32)."""
    import resource

    from flowforge.runs.build import SpecTooLarge, build_within

    spec = {"name": "maf", "options": {"hidden": [40000, 40000]}, "event_shape": [2]}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(SpecTooLarge, match="asks for more than 67,108,864 bytes"):
        build_within(spec, 64 * 2**20)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_a_budgeted_build_draws_what_a_plain_one_draws():
    """The budget changes nothing a model build does: same parameters, same random stream."""
    from flowforge.runs.build import build_from_spec, build_within

    spec = {"name": "realnvp", "options": {"couplings": 2, "hidden": [8]}, "event_shape": [3]}
    torch.manual_seed(0)
    plain = build_from_spec(copy.deepcopy(spec)).state_dict()
    after_plain = torch.get_rng_state()
    torch.manual_seed(0)
    budgeted = build_within(spec, 64 * 2**20).state_dict()
    assert torch.equal(torch.get_rng_state(), after_plain)
    assert all(torch.equal(plain[k], budgeted[k]) for k in plain)
