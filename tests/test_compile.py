"""``train.compile: auto | true | false``: the decision rule (with made-up costs), where it
never compiles, the recorded decision, its reuse on resume, and the fallback to eager when
compiling fails. No test here compiles for real except the one marked slow."""

import json

import pytest
import torch

import flowforge.train.compiling as compiling
from flowforge.cli import main as cli_main
from flowforge.config import ConfigError, parse_config
from flowforge.runs import train_run
from flowforge.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from flowforge.train.compiling import Cost, Decision, decide, estimated_step_seconds, pays
from helpers import final_parameters, metrics

COST = Cost(compile_seconds=30.0, saving=0.5, step_seconds=0.01, work=1_000_000)
CPU = torch.device("cpu")


def _decide(mode="auto", **facts):
    kwargs = {
        "model_name": "realnvp",
        "model_options": {},
        "objective": "mle",
        "own_steps": "",
        "params": 2000,
        "batch_size": 500,  # work 1e6: the made-up cost's row, so t = 10 ms
        "steps": 100_000,
        "max_seconds": 0.0,
        "device": CPU,
        "missing": lambda device: None,
        **facts,
    }
    return decide(mode, **kwargs)


@pytest.fixture
def costs(monkeypatch):
    """The made-up cost for realnvp and for the spline flow's coupling kind only."""
    monkeypatch.setattr(compiling, "COSTS", {"realnvp": COST, "nsf-coupling": COST})


# -- the rule ---------------------------------------------------------------------------------
def test_the_rule_compiles_when_the_saving_repays_the_compilation_twice():
    """s * steps * t against k * C: 0.5 * 12,001 * 10 ms = 60.005 s > 2 * 30 s; 12,000 steps
    save exactly 60 s, not more."""
    assert pays(COST, 12_001, 0.0, 0.01)[0]
    worth, why = pays(COST, 12_000, 0.0, 0.01)
    assert not worth
    assert why == "12,000 steps x ~10 ms (est.) x 50% saved = ~60 s <= 2 x ~30 s to compile"


def test_a_time_budget_decides_alone_when_it_ends_the_run_first():
    """A budget shorter than the steps: s * T > k * C whatever the step time."""
    assert pays(COST, 10**9, 121.0, 0.01)[0]
    worth, why = pays(COST, 10**9, 120.0, 0.01)
    assert not worth and why.startswith("a budget of 120 s (est.) x 50% saved = ~60 s <=")
    assert not pays(COST, 100, 10_000.0, 0.01)[0]  # the steps end it first: 0.5 s saved


def test_estimated_step_grows_as_the_square_root_of_the_work():
    assert estimated_step_seconds(COST, 1_000_000) == pytest.approx(0.01)
    assert estimated_step_seconds(COST, 4_000_000) == pytest.approx(0.02)
    assert estimated_step_seconds(COST, 250_000) == pytest.approx(0.005)


def test_auto_compiles_a_long_run_and_not_a_short_one(costs):
    long = _decide(steps=100_000)
    assert long.to_dict() == {
        "mode": "auto",
        "used": True,
        "why": "100,000 steps x ~10 ms (est.) x 50% saved = ~500 s > 2 x ~30 s to compile",
    }
    assert not _decide(steps=3000).used


def test_true_and_false_are_taken_as_said(costs):
    assert _decide(True, steps=10).to_dict() == {
        "mode": "true",
        "used": True,
        "why": "set by train.compile",
    }
    assert not _decide(False).used and _decide(False).mode == "false"


@pytest.mark.parametrize(
    "facts, why",
    [
        ({"own_steps": "critic updates", "objective": "gan"}, "objective 'gan' takes steps of"),
        ({"model_name": "ffjord"}, "adaptive ODE solver"),
        ({"model_name": "resflow"}, "random number of terms"),
        ({"model_name": "maf"}, "model 'maf': compile cost not measured"),
        ({"model_name": "nsf"}, "model 'nsf-autoregressive': compile cost not measured"),
        ({"objective": "reverse_kl"}, "objective 'reverse_kl': compile cost not measured"),
        ({"device": torch.device("meta")}, "measured on the CPU only, not meta"),
        ({"missing": lambda d: "no C++ compiler for inductor (x)"}, "no C++ compiler"),
    ],
)
def test_auto_never_compiles_where_compiling_cannot_apply(costs, facts, why):
    """Each condition alone keeps a run that would repay compiling eager, and says why."""
    decision = _decide(**facts)
    assert not decision.used and why in decision.why


def test_the_spline_flows_kind_picks_its_cost(costs):
    assert _decide(model_name="nsf", model_options={"kind": "coupling"}).used


def test_the_backend_is_asked_only_when_compiling_would_pay(costs):
    """Asking imports Dynamo (a second): short runs never pay for it."""
    asked = []
    _decide(steps=10, missing=lambda d: asked.append(d))
    assert asked == []
    _decide(missing=lambda d: asked.append(d))
    assert asked == [CPU]


@pytest.mark.slow
def test_this_machines_backend_check_answers():
    """On this machine: ``None`` or a reason, never an exception."""
    answer = compiling.backend_missing(CPU)
    assert answer is None or isinstance(answer, str)


def test_every_measured_family_decides_eager_for_a_test_sized_run():
    """The test suite's runs (a few hundred steps of small models) never compile under the
    default: each measured family at 100,000 parameters x 512 rows for 500 steps."""
    for family in compiling.COSTS:
        name, _, kind = family.partition("-")
        decision = _decide(
            model_name=name,
            model_options={"kind": kind} if kind else {},
            objective="elbo" if name == "vae" else "mle",
            params=100_000,
            batch_size=512,
            steps=500,
        )
        assert not decision.used, (family, decision.why)


# -- the config and the command line ----------------------------------------------------------
def test_the_default_is_auto_and_booleans_still_read():
    assert parse_config({}).train.compile == "auto"
    assert parse_config({"train": {"compile": False}}).train.compile is False
    assert parse_config({"train": {"compile": True}}).train.compile is True
    assert parse_config({"train": {"compile": "auto"}}).to_dict()["train"]["compile"] == "auto"


@pytest.mark.parametrize("value", ["yes", "Auto", 1])
def test_other_values_are_refused(value):
    with pytest.raises(ConfigError, match="train.compile: should be"):
        parse_config({"train": {"compile": value}})


def tiny(tmp_path, **train):
    return parse_config(
        {
            "name": "tiny",
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 512, "n_val": 128, "n_test": 128},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [8]},
            "train": {"steps": 20, "batch_size": 64, "eval_every": 10, **train},
        }
    )


def test_a_tiny_run_decides_eager_and_records_it(tmp_path):
    """The default on a test-sized run: not compiled, and the summary and the checkpoint say
    why; the metrics hold no compile record (one is written only when compiling)."""
    result = train_run(tiny(tmp_path), progress=False, plots=False)
    decision = result.summary["compile"]
    assert decision["mode"] == "auto" and decision["used"] is False
    assert "to compile" in decision["why"]
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["compile"] == decision
    assert all(r.get("event") != "compile" for r in metrics(result.run_dir))


@pytest.mark.parametrize("flag, mode", [("--compile", "true"), ("--no-compile", "false")])
def test_the_command_line_flags_set_the_mode(tmp_path, monkeypatch, flag, mode):
    """``--compile`` and ``--no-compile`` (torch.compile faked: nothing compiles here; no
    figures)."""
    import flowforge.runs

    real = flowforge.runs.train_run
    monkeypatch.setattr(flowforge.runs, "train_run", lambda cfg, **kw: real(cfg, plots=False, **kw))
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    args = ["--set", f"output_dir={tmp_path}", "--set", "name=cli", "--quiet"]
    sets = ["data.name=moons", "data.n_train=256", "data.n_val=64", "data.n_test=64"]
    sets += ["train.steps=4", "train.eval_every=2", "train.batch_size=32"]
    sets += ["model.couplings=1", "model.hidden=[4]"]
    assert cli_main(["train", flag, *args, *(f"--set={s}" for s in sets)]) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["compile"]["mode"] == mode


def test_compile_and_no_compile_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--compile", "--no-compile"])
    assert "not allowed with argument" in capsys.readouterr().err


# -- the fallback -----------------------------------------------------------------------------
def failing_compile(module, **kwargs):
    """``torch.compile`` whose compiled module fails its first call, as inductor does without
    a compiler."""

    def compiled(*args):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    return compiled


def test_a_failed_compilation_falls_back_to_eager_with_one_line(tmp_path, monkeypatch, capsys):
    """``train.compile: true`` where compiling fails: one notice on stderr, the run trains
    eagerly to the same parameters as an eager run, and the metrics and the summary say so."""
    eager = train_run(tiny(tmp_path / "eager", compile=False), progress=False, plots=False)
    capsys.readouterr()
    monkeypatch.setattr(torch, "compile", failing_compile)
    result = train_run(tiny(tmp_path / "failed", compile=True), progress=False, plots=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "notice: train.compile: compiling the training step failed (RuntimeError: "
        "InvalidCxxCompiler: No working C++ compiler found); training eagerly"
    ]
    decision = result.summary["compile"]
    assert decision["mode"] == "true" and decision["used"] is False
    assert decision["why"].startswith("compiling failed (RuntimeError: InvalidCxxCompiler")
    records = [r for r in metrics(result.run_dir) if r.get("event") == "compile"]
    assert [(r["step"], r["compile"]["used"]) for r in records] == [(0, True), (0, False)]
    a, b = final_parameters(eager.run_dir), final_parameters(result.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_error_eager_computation_raises_too_propagates(tmp_path, monkeypatch):
    """The fallback retries eagerly: a model's own error is not swallowed."""
    from flowforge.train.compiling import CompiledStep

    monkeypatch.setattr(torch, "compile", failing_compile)

    def broken(x):
        raise ValueError("the model's own error")

    step = CompiledStep(broken, Decision("true", True, "set by train.compile"))
    with pytest.raises(ValueError, match="the model's own error"):
        step(torch.zeros(1))
    assert step.decision.used is False


# -- resume -----------------------------------------------------------------------------------
def _cut_and_resume(tmp_path, monkeypatch, overrides, between=lambda: None):
    """A 20-step auto run stopped at step 10 (SIGINT faked at the second evaluation's
    checkpoint), then, after ``between()``, resumed with ``overrides``."""
    from flowforge.train.trainer import Trainer, TrainingInterrupted

    real = Trainer.evaluate_and_checkpoint

    def stop_at_10(self, bar):
        out = real(self, bar)
        if self.progress.step == 10:
            raise TrainingInterrupted("faked")
        return out

    monkeypatch.setattr(Trainer, "evaluate_and_checkpoint", stop_at_10)
    with pytest.raises(TrainingInterrupted):
        train_run(tiny(tmp_path), progress=False, plots=False)
    monkeypatch.setattr(Trainer, "evaluate_and_checkpoint", real)
    between()
    return train_run(resume=tmp_path / "tiny", overrides=overrides, progress=False, plots=False)


def test_a_resumed_auto_run_keeps_its_recorded_decision(tmp_path, monkeypatch, costs):
    """Started short (eager), resumed where a fresh decision would compile (a cost that any
    run repays): the recorded decision stands, so the run computes as it began."""
    resumed = _cut_and_resume(tmp_path, monkeypatch, ["train.steps=30"])
    assert resumed.summary["compile"]["used"] is False
    monkeypatch.setattr(compiling, "COSTS", {"realnvp": Cost(1e-9, 0.99, 1.0, 1)})
    monkeypatch.setattr(compiling, "backend_missing", lambda device: None)
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    again = train_run(
        resume=tmp_path / "tiny", overrides=["train.steps=40"], progress=False, plots=False
    )
    assert again.summary["compile"] == resumed.summary["compile"]


def test_a_resumed_compiled_run_stays_compiled_and_bit_identical(tmp_path, monkeypatch):
    """An auto run that decided to compile (made-up cost; torch.compile faked as the
    identity) is resumed compiled, with the same parameters as the uninterrupted run, even
    where a fresh decision would now say no."""
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    monkeypatch.setattr(compiling, "COSTS", {"realnvp": Cost(1e-9, 0.99, 1.0, 1)})
    monkeypatch.setattr(compiling, "backend_missing", lambda device: None)
    whole = train_run(tiny(tmp_path / "whole"), progress=False, plots=False)
    assert whole.summary["compile"]["used"] is True
    compiled = [r for r in metrics(whole.run_dir) if r.get("event") == "compile"]
    assert compiled == [{"step": 0, "event": "compile", "compile": whole.summary["compile"]}]

    def forget() -> None:  # a fresh decision now: not measured, eager
        monkeypatch.setattr(compiling, "COSTS", {})

    resumed = _cut_and_resume(tmp_path / "cut", monkeypatch, [], forget)
    assert resumed.summary["compile"] == whole.summary["compile"]
    a, b = final_parameters(whole.run_dir), final_parameters(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_from_before_decisions_resumes(tmp_path):
    """A ``last.pt`` without a decision (older flowforge) resumes with one made now."""
    path = tmp_path / "tiny" / "checkpoints" / "last.pt"
    train_run(tiny(tmp_path, steps=10), progress=False, plots=False)
    payload = load_checkpoint(path)
    del payload["compile"]
    save_checkpoint(path, payload)
    resumed = train_run(
        resume=tmp_path / "tiny", overrides=["train.steps=20"], progress=False, plots=False
    )
    assert resumed.summary["steps"] == 20 and resumed.summary["compile"]["used"] is False


def test_a_malformed_recorded_decision_is_refused(tmp_path):
    path = tmp_path / "tiny" / "checkpoints" / "last.pt"
    train_run(tiny(tmp_path, steps=10), progress=False, plots=False)
    payload = load_checkpoint(path)
    payload["compile"] = {"mode": "auto", "used": "yes", "why": ""}
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match="compile decision should be"):
        train_run(
            resume=tmp_path / "tiny", overrides=["train.steps=20"], progress=False, plots=False
        )


# -- a real compilation -----------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_compile_failure_falls_back(tmp_path, monkeypatch, capsys):
    """Inductor pointed at a C++ compiler that does not exist: the run trains eagerly after
    one notice."""
    pytest.importorskip("torch._inductor")
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, "no-such-c++-compiler"))
    monkeypatch.setattr(inductor, "force_disable_caches", True)
    result = train_run(tiny(tmp_path, compile=True), progress=False, plots=False)
    notices = [x for x in capsys.readouterr().err.splitlines() if x.startswith("notice:")]
    assert len(notices) == 1 and "training eagerly" in notices[0]
    assert result.summary["compile"]["used"] is False


def test_the_compilers_notes_are_silenced_while_it_compiles(caplog, recwarn):
    import logging
    import warnings

    from flowforge.train.compiling import _quiet_compiler

    dynamo = logging.getLogger("torch._dynamo")
    with caplog.at_level(logging.WARNING, logger="torch._dynamo"):
        with _quiet_compiler(True):
            dynamo.warning("Graph break from `Tensor.item()`")
            warnings.warn("torch._prims_common.check is deprecated", FutureWarning, stacklevel=1)
        assert not caplog.records and not recwarn.list
        assert dynamo.level != logging.ERROR  # restored
        with _quiet_compiler(False):  # after the first calls: nothing is silenced
            dynamo.warning("a later note")
        assert [r.getMessage() for r in caplog.records] == ["a later note"]
