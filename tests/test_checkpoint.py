"""Checkpoints: atomic, finite, and loaded without executing code, with clear errors."""

import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from flowforge import run_files
from flowforge.models import realnvp
from flowforge.run_files import atomic_write_text
from flowforge.train.checkpoint import (
    FORMAT,
    CheckpointError,
    check_model_state,
    check_optimizer_state,
    load_averaged_parameters,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)


def test_round_trip_and_no_temporary_files(tmp_path):
    model = realnvp(2, couplings=2)
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 3})
    payload = load_checkpoint(path)
    assert payload["step"] == 3
    assert os.listdir(path.parent) == ["last.pt"]
    load_model_state(path, realnvp(2, couplings=2), payload)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("proc_status", [True, False])
def test_atomic_writes_follow_the_umask(tmp_path, monkeypatch, umask, mode, proc_status):
    """Files written atomically get ``0o666 & ~umask`` as a plain ``open()`` would give them,
    not ``mkstemp``'s ``0o600``; the umask is read from ``/proc/self/status`` or, without it,
    set and restored."""
    if not proc_status:

        def no_proc(*args, **kwargs):
            raise FileNotFoundError("/proc/self/status")

        monkeypatch.setattr(run_files, "open", no_proc, raising=False)
    previous = os.umask(umask)
    try:
        assert run_files.current_umask() == umask
        assert os.umask(umask) == umask  # reading it left it as it was
        atomic_write_text(tmp_path / "config.yaml", "name: x\n")
        save_checkpoint(tmp_path / "last.pt", {"model": realnvp(2, couplings=2).state_dict()})
    finally:
        os.umask(previous)
    for name in ("config.yaml", "last.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_refuses_to_write_nan_weights_and_keeps_the_old_file(tmp_path):
    model = realnvp(2, couplings=2)
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 1})
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        save_checkpoint(path, {"model": model.state_dict(), "step": 2})
    assert load_checkpoint(path)["step"] == 1


def test_truncated_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": realnvp(2).state_dict()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last.pt: corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a flowforge checkpoint"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "flowforge-checkpoint-v1", "model": Exploit()}, path)
    with pytest.raises(CheckpointError, match="execute code"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"model": realnvp(2, couplings=2).state_dict()})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_model_state(path, realnvp(2, couplings=4), load_checkpoint(path))


# -- every tensor checked against what it is loaded into (issue 19, item 1) -----------------


def _trained_adamw(model):
    """A fused AdamW after one step, so every parameter has its state."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    return optimizer


def _save_raw(path, payload):
    """Writes a checkpoint as ``save_checkpoint`` would, without its own checks."""
    torch.save({"format": FORMAT, **payload}, path)
    return path


@pytest.mark.parametrize("size", [1, 10_000])
def test_optimizer_state_of_another_size_is_refused(tmp_path, size):
    model = realnvp(2, couplings=2)
    state = _trained_adamw(model).state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(size)
    path = _save_raw(tmp_path / "last.pt", {"model": model.state_dict(), "optimizer": state})
    payload = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"last.pt: .*parameter 0 'exp_avg' has shape"):
        check_optimizer_state(path, _trained_adamw(model), payload["optimizer"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["state"][1].update(exp_avg_sq=s["state"][1]["exp_avg_sq"].double()), "dtype"),
        (lambda s: s["state"][2]["exp_avg"].view(-1).__setitem__(0, float("nan")), "NaN"),
        (lambda s: s["state"][0].update(step=torch.tensor(float("inf"))), "'step' is inf"),
        (lambda s: s["state"][0].update(step=torch.ones(3)), "'step' has shape"),
        (lambda s: s["state"][0].pop("exp_avg_sq"), "lacks 'exp_avg_sq'"),
        (lambda s: s["state"][0].update(exp_avg=torch.zeros(1).expand(32, 1)), "strides"),
        (lambda s: s["state"].update({99: {}}), "parameter id 99"),
        (lambda s: s["param_groups"][0]["params"].pop(), "group 0 holds"),
        (lambda s: s["param_groups"].append(s["param_groups"][0]), "2 parameter groups"),
        (lambda s: s["param_groups"][0].update(lr=float("nan")), "'lr' is nan"),
    ],
)
def test_optimizer_state_that_does_not_fit_is_named(tmp_path, change, message):
    model = realnvp(2, couplings=2)
    state = _trained_adamw(model).state_dict()
    change(state)
    with pytest.raises(CheckpointError, match=message):
        check_optimizer_state(tmp_path / "last.pt", _trained_adamw(model), state)
    fresh = _trained_adamw(model).state_dict()
    check_optimizer_state(tmp_path / "last.pt", _trained_adamw(model), fresh)  # fits


def _trained_rmsprop(model):
    """RMSprop with momentum, centred, after one step: ``square_avg``, ``momentum_buffer`` and
    ``grad_avg`` for every parameter."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.5, centered=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    return optimizer


@pytest.mark.parametrize("entry", ["square_avg", "momentum_buffer", "grad_avg"])
def test_rmsprop_state_is_checked_like_adams(tmp_path, entry):
    model = realnvp(2, couplings=2)
    state = _trained_rmsprop(model).state_dict()
    check_optimizer_state(tmp_path / "last.pt", _trained_rmsprop(model), state)  # fits
    state["state"][0][entry] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=f"parameter 0 '{entry}' has shape"):
        check_optimizer_state(tmp_path / "last.pt", _trained_rmsprop(model), state)
    state["state"][0].pop(entry)
    with pytest.raises(CheckpointError, match=f"lacks '{entry}'"):
        check_optimizer_state(tmp_path / "last.pt", _trained_rmsprop(model), state)


_STEP_AFTER_LOADING = """
import sys, torch
from flowforge.train.checkpoint import CheckpointError, check_optimizer_state, load_checkpoint
path, checked = sys.argv[1], sys.argv[2] == "checked"
model = torch.nn.Linear(512, 512)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
payload = load_checkpoint(path)
try:
    if checked:
        check_optimizer_state(path, optimizer, payload["optimizer"])
    optimizer.load_state_dict(payload["optimizer"])
except CheckpointError as e:
    print(e)
    sys.exit(3)
for _ in range(3):
    model(torch.ones(4, 512)).sum().backward()
    optimizer.step()
print("stepped")
"""


@pytest.mark.slow
def test_too_small_optimizer_state_crashes_the_fused_step_unless_checked(tmp_path):
    """The unchecked load runs in a subprocess: it corrupts the heap, which ends in SIGSEGV or
    an abort, or (undefined behaviour, seen on a loaded machine) a process that never returns:
    a hang of a minute counts as the same damage."""
    model = torch.nn.Linear(512, 512)
    state = _trained_adamw(model).state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(1)
    state["state"][0]["exp_avg_sq"] = torch.zeros(1)
    path = _save_raw(tmp_path / "last.pt", {"model": model.state_dict(), "optimizer": state})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}

    def run(mode, timeout):
        argv = [sys.executable, "-c", _STEP_AFTER_LOADING, str(path), mode]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)

    checked = run("checked", 300)
    assert checked.returncode == 3, checked.stderr
    assert "last.pt: optimiser state of parameter 0 'exp_avg' has shape (1,)" in checked.stdout
    try:
        unchecked = run("unchecked", 60)
    except subprocess.TimeoutExpired:
        return  # the corrupted heap hung the process (subprocess.run killed it)
    assert unchecked.returncode < 0, (unchecked.returncode, unchecked.stdout)  # killed by a signal


def test_nan_in_the_model_state_is_refused_on_load(tmp_path):
    model = realnvp(2, couplings=2)
    state = model.state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    path = _save_raw(tmp_path / "last.pt", {"model": state})
    with pytest.raises(CheckpointError, match=rf"last.pt: model tensor '{key}' holds NaN"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=rf"model tensor '{key}' holds NaN"):
        check_model_state(path, model, state)


def test_wrong_dtype_or_shape_in_the_model_state_is_named(tmp_path):
    model = realnvp(2, couplings=2)
    key = next(k for k, v in model.state_dict().items() if v.is_floating_point())
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {**model.state_dict(), key: model.state_dict()[key].double()}})
    with pytest.raises(CheckpointError, match=rf"model tensor '{key}' has dtype torch.float64"):
        load_model_state(path, model, load_checkpoint(path))
    save_checkpoint(path, {"model": {**model.state_dict(), key: torch.zeros(3)}})
    with pytest.raises(CheckpointError, match=rf"model tensor '{key}' has shape \(3,\)"):
        load_model_state(path, model, load_checkpoint(path))


def test_averaged_parameters_are_checked(tmp_path):
    model = realnvp(2, couplings=2)
    shadow = [p.detach().clone() for p in model.parameters()]
    shadow[1] = shadow[1].double()
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "ema": shadow})
    with pytest.raises(CheckpointError, match="averaged tensor 1 has dtype"):
        load_averaged_parameters(path, model, load_checkpoint(path))
    shadow[1] = torch.full_like(shadow[0], float("inf"))
    _save_raw(path, {"model": model.state_dict(), "ema": shadow})
    with pytest.raises(CheckpointError, match="averaged tensor 1 holds NaN or infinite"):
        load_checkpoint(path)


# -- integrity: a flipped bit is detected (issue 19, item 6) ---------------------------------


def _member_data_ranges(path):
    """(name, first byte, end) of every member's stored bytes in the archive."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    raw = path.read_bytes()
    ranges = []
    for info in infos:
        name_len, extra_len = struct.unpack(
            "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
        )
        start = info.header_offset + 30 + name_len + extra_len
        ranges.append((info.filename, start, start + info.compress_size))
    return ranges


def test_single_bit_flips_in_tensor_data_are_detected(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": realnvp(4, couplings=2).state_dict(), "step": 1})
    good = path.read_bytes()
    ranges = _member_data_ranges(path)
    tensors = [r for r in ranges if "/data/" in r[0] and r[2] - r[1] >= 8]
    assert len(tensors) >= 4
    flips = []
    for name, start, end in tensors[:4] + [r for r in ranges if r[0].endswith("data.pkl")]:
        flips += [(name, start, 0), (name, (start + end) // 2, 7), (name, end - 1, 3)]
    for name, offset, bit in flips:
        damaged = bytearray(good)
        damaged[offset] ^= 1 << bit
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match=rf"last.pt: .*member {name} fails its CRC"):
            load_checkpoint(path)
    path.write_bytes(good)
    assert load_checkpoint(path)["step"] == 1
