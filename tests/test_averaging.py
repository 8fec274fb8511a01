"""Polyak averaging (``train.ema``): the formula, the swap, checkpoints, evaluation, resume."""

import json

import pytest
import torch
from torch import nn

from flowforge.config import ConfigError, parse_config
from flowforge.objectives.mle import evaluate_nll
from flowforge.runs import load, open_run, train_run
from flowforge.runs.build import load_data
from flowforge.train.averaging import ParameterAverage
from flowforge.train.checkpoint import CheckpointError, load_averaged_parameters, load_checkpoint
from test_train import tiny  # pytest puts tests/ on sys.path (no __init__.py there)


def test_average_follows_the_ramped_decay():
    layer = nn.Linear(1, 1, bias=False)
    average = ParameterAverage(layer, 0.5)
    expected = None
    for n, value in enumerate([4.0, 2.0, 8.0, -1.0]):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(n)
        d = min(0.5, n / (n + 10))
        expected = value if expected is None else d * expected + (1 - d) * value
        assert average.shadow[0].item() == pytest.approx(expected)
    assert n / (n + 10) < 0.5  # the ramp, not the decay, was in force: d = 0, 1/11, 2/12, 3/13


def test_applied_swaps_the_average_in_and_the_raw_parameters_back():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    average = ParameterAverage(layer, 0.9)
    raw = [p.detach().clone() for p in layer.parameters()]
    average.shadow = [torch.full_like(p, 7.0) for p in raw]
    with average.applied():
        assert all(bool((p == 7.0).all()) for p in layer.parameters())
    assert all(torch.equal(p, r) for p, r in zip(layer.parameters(), raw, strict=True))


def test_load_rejects_a_wrong_count_or_shape():
    average = ParameterAverage(nn.Linear(3, 2), 0.9)
    with pytest.raises(ValueError, match="1 averaged tensors for 2 parameters"):
        average.load([torch.zeros(2, 3)])
    with pytest.raises(ValueError, match=r"averaged tensor 0 has shape \(3, 2\), not \(2, 3\)"):
        average.load([torch.zeros(3, 2), torch.zeros(2)])


def test_decay_outside_zero_one_is_a_config_error():
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"train.ema: should be in \[0, 1\)"):
            parse_config({"train": {"ema": bad}})


def _tiny(tmp_path, **train):
    """``tests/test_train.py``'s tiny run with averaging on and a higher learning rate."""
    return tiny(tmp_path, lr=0.01, ema=0.9, **train)


def test_evaluation_and_best_checkpoint_use_the_averaged_parameters(tmp_path):
    """The logged validation NLL is that of the averaged parameters (recomputed from the
    checkpoint's average), not of the raw ones; best.pt holds the average."""
    run_dir = train_run(
        _tiny(tmp_path, steps=30, eval_every=30), progress=False, plots=False
    ).run_dir
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    run = open_run(run_dir)
    splits, flow = load_data(run.config), run.model("last")  # the raw parameters
    raw_nll, _ = evaluate_nll(flow, splits.val, None, 4096)
    assert load_averaged_parameters(run_dir / "checkpoints" / "last.pt", flow, last)
    averaged_nll, _ = evaluate_nll(flow, splits.val, None, 4096)
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["val_nll"]
    assert logged == pytest.approx(averaged_nll, abs=1e-6)
    assert abs(raw_nll - averaged_nll) > 1e-3  # the two differ, so the check can fail
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")["model"]
    names = [name for name, _ in flow.named_parameters()]
    assert all(torch.equal(best[k], s) for k, s in zip(names, last["ema"], strict=True))


def test_load_averaged_parameters_without_an_average_or_with_a_wrong_one(tmp_path):
    run_dir = train_run(_tiny(tmp_path, steps=5, eval_every=5), progress=False, plots=False).run_dir
    path = run_dir / "checkpoints" / "last.pt"
    last = load_checkpoint(path)
    flow = load(run_dir, "last")
    raw = [p.detach().clone() for p in flow.parameters()]
    assert not load_averaged_parameters(path, flow, {k: v for k, v in last.items() if k != "ema"})
    assert all(torch.equal(p, r) for p, r in zip(flow.parameters(), raw, strict=True))
    with pytest.raises(CheckpointError, match="averaged tensors for"):
        load_averaged_parameters(path, flow, {**last, "ema": last["ema"][:-1]})
    wrong_shape = [t.flatten() if t.dim() > 1 else t[:0] for t in last["ema"]]
    with pytest.raises(CheckpointError, match="averaged tensor 0 has shape"):
        load_averaged_parameters(path, flow, {**last, "ema": wrong_shape})


def test_resumed_run_carries_the_average_on_bit_identical(tmp_path):
    whole = train_run(
        _tiny(tmp_path / "a", steps=20, schedule="constant"), progress=False, plots=False
    )
    cut = _tiny(tmp_path / "b", steps=10, schedule="constant")
    first = train_run(cut, progress=False, plots=False)
    cut.train.steps = 20
    train_run(cut, resume=first.run_dir, progress=False, plots=False)
    a = load_checkpoint(whole.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")
    assert all(torch.equal(x, y) for x, y in zip(a["ema"], b["ema"], strict=True))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
