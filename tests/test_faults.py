"""Fault injection through the command line: SIGKILL during every file write of a run (and at
random points) for every objective, a full disk, hostile checkpoints and data files, two
processes at once. The faults come from ``tests/fault_injection/sitecustomize.py``, loaded by
the ``flowforge`` process under test (it patches ``open``/``os.replace``, not flowforge).

The default tier runs one objective (``mle``) through the write faults; the slow tier runs every
objective, a real full disk (a tmpfs, as root) and the concurrency races.
"""

import json
import os
import pickle
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowforge.cli import main
from flowforge.config import parse_config
from flowforge.runs import train_run
from flowforge.train.checkpoint import load_checkpoint
from helpers import cli_process, metrics, metrics_without_time, train_teacher

INJECTOR = Path(__file__).parent / "fault_injection"
SRC = Path(__file__).parents[1] / "src"
MOONS = {"name": "moons", "n_train": 512, "n_val": 128, "n_test": 128}
GAUSSIANS = {"name": "8gaussians", "n_train": 512, "n_val": 128, "n_test": 128}
MNIST = {"name": "binarized_mnist", "n_train": 256, "n_val": 64, "n_test": 64}
VAE = {"name": "vae", "latent": 2, "hidden": [16], "posterior": "planar", "flow_layers": 2}
VAE_OPTIONS = {"k": 2, "eval_k": 8, "eval_n": 64}
KL_OPTIONS = {"val_samples": 256, "eval_samples": 512}
GAN = {"name": "gan", "latent": 2, "hidden": [16, 16]}
GAN_SCORES = {"val_n": 128, "eval_n": 256}
RBM = {"name": "rbm", "hidden": 16, "sample_steps": 5}
CD = {"name": "cd", "k": 1, "eval_chains": 8, "eval_betas": 50, "eval_n": 32}
SECTIONS = {
    "mle": {"data": MOONS, "model": {"name": "realnvp", "couplings": 2, "hidden": [16]}},
    "elbo": {"objective": {"name": "elbo", "kl_warmup": 10, **VAE_OPTIONS}, "data": MOONS},
    "iwae": {"objective": {"name": "iwae", **VAE_OPTIONS}, "data": MOONS, "model": VAE},
    "reverse_kl": {
        "objective": {"name": "reverse_kl", "target": "U2", "anneal": 10, **KL_OPTIONS},
        "model": {"name": "planar", "layers": 4},
    },
    "distill": {
        "objective": {"name": "distill", "teacher": "TEACHER", **KL_OPTIONS},
        "model": {"name": "iaf", "layers": 2, "hidden": [16]},
    },
    "gan": {"objective": {"name": "gan", **GAN_SCORES}, "data": GAUSSIANS, "model": GAN},
    "wgan": {"objective": {"name": "wgan", "n_critic": 2, **GAN_SCORES}, "data": GAUSSIANS},
    "wgan_gp": {"objective": {"name": "wgan_gp", "n_critic": 2, **GAN_SCORES}, "data": GAUSSIANS},
    "cd": {"objective": {**CD, "persistent": True}, "data": MNIST, "model": RBM},
    "dbm": {"objective": {**CD, "name": "dbm", "pretrain_steps": 3, "chains": 8}, "data": MNIST},
    "jko": {  # two CNF blocks of 10 steps each: the 20 steps of config()
        "objective": {"name": "jko", "step_size": 0.5, "steps_per_block": 10},
        "data": MOONS,
        "model": {"name": "ffjord", "blocks": 2, "hidden": [8], "method": "rk4", "step_size": 0.25},
    },
    "likelihood": {
        "objective": {"name": "likelihood"},
        "data": MNIST,
        "model": {"name": "nade", "hidden": 8},
    },
}
SECTIONS["elbo"]["model"] = VAE
SECTIONS["wgan"]["model"] = SECTIONS["wgan_gp"]["model"] = GAN
SECTIONS["dbm"]["model"] = {"name": "dbm", "hidden1": 12, "hidden2": 8, "sample_steps": 5}
OBJECTIVES = list(SECTIONS)
MNIST_OBJECTIVES = ("cd", "dbm", "likelihood")


def config(objective, teacher="", steps=20, eval_every=5, **train):
    sections = json.loads(json.dumps(SECTIONS[objective]).replace('"TEACHER"', json.dumps(teacher)))
    train = {"steps": steps, "batch_size": 32, "eval_every": eval_every, "lr": 1e-3, **train}
    return {"name": objective, "train": train, **sections}


def cli(*args, cwd, fault=None):
    """``python -m flowforge.cli ARGS`` in ``cwd`` with one thread, under ``fault``
    (``WHEN:FILE:N``, see the injector) when given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(INJECTOR), str(SRC), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.pop("FLOWFORGE_FAULT", None)
    if fault:
        env["FLOWFORGE_FAULT"] = fault
    return cli_process(*args, cwd=cwd, env=env)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def one_line_error(err):
    """The CLI's user-error form: one line starting with ``error:``."""
    lines = [x for x in err.splitlines() if x.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ")


def state(run_dir):
    """What must be bit-identical: the model, the objective's own state, the records."""
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return payload["model"], payload.get("objective_state", {}), metrics_without_time(run_dir)


def equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return train_teacher(tmp_path_factory.mktemp("teacher"), 40)


def needs_data(objective):
    if objective in MNIST_OBJECTIVES:
        import flowforge.data.binarized_mnist as mnist

        if not mnist.DEFAULT_PATH.is_file():
            pytest.skip("binarized MNIST not found in the shared data folder")


def setup(tmp_path, objective, teacher, **train):
    needs_data(objective)
    path = tmp_path / f"{objective}.yaml"
    path.write_text(yaml.safe_dump(config(objective, teacher, **train)))
    whole = cli("train", str(path), "--quiet", "--set", "name=whole", cwd=tmp_path)
    status, err = finish(whole)
    assert status == 0, err
    return path, state(tmp_path / "runs" / "whole")


@pytest.fixture(scope="module")
def whole_mle(tmp_path_factory):
    """The uninterrupted 20-step mle run: its config file and end state."""
    root = tmp_path_factory.mktemp("whole")
    return setup(root, "mle", "")


# -- SIGKILL during each write ----------------------------------------------------------------
# Each chain starts a run under the first fault, then resumes under each next one, then resumes
# without a fault; the end state must equal the uninterrupted run's. Writes of a 20-step run,
# eval_every 5: last.pt at steps 0, 5, 10, 15, 20; metrics.jsonl appends at 5, 10, 15, 20; a
# resume first rewrites metrics.jsonl (its records up to the resume step).
CHAIN = [
    "mid_write:last.pt:3",  # dies writing step 10's resume point: resumes at 5
    "mid_write:metrics.jsonl:1",  # the resume dies rewriting the history: resumes at 5 again
    "before_rename:metrics.jsonl:3",  # step 15's record written, last.pt still at 10
    "before_rename:last.pt:1",  # step 15's last.pt complete but not renamed: resumes at 10
    "after_rename:last.pt:2",  # dies right after step 20's last.pt: resumes at 20
    "mid_write:summary.json:1",  # dies writing the summary: the resume only summarises
]
FAST_CHAIN = ["mid_write:last.pt:3", "mid_write:metrics.jsonl:1", "before_rename:last.pt:2"]


def run_chain(tmp_path, path, faults):
    run_dir = tmp_path / "runs" / "cut"
    proc = cli("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path, fault=faults[0])
    for fault in [*faults[1:], None]:
        status, err = finish(proc)
        assert status == -signal.SIGKILL, (status, err)  # every fault was reached
        proc = cli("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path, fault=fault)
    status, err = finish(proc)
    assert status == 0, err
    assert not list(run_dir.rglob(".*.tmp"))  # orphans of killed writes removed
    return run_dir


def test_sigkill_during_each_write_resumes_bit_identical_mle(tmp_path, whole_mle):
    path, whole = whole_mle
    assert equal(state(run_chain(tmp_path, path, FAST_CHAIN)), whole)


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_sigkill_during_each_write_resumes_bit_identical(tmp_path, teacher, objective):
    path, whole = setup(tmp_path, objective, teacher)
    assert equal(state(run_chain(tmp_path, path, CHAIN)), whole)


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_sigkill_at_random_points_resumes_bit_identical(tmp_path, teacher, objective):
    """SIGKILL at random moments (after a random number of records, plus a random delay),
    resuming after each; a kill before the first checkpoint means a fresh start."""
    path, whole = setup(tmp_path, objective, teacher)
    rng = random.Random(OBJECTIVES.index(objective))
    run_dir = tmp_path / "runs" / "cut"
    proc = cli("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path)
    for _ in range(5):  # issue 30: five random kills per objective
        records = rng.randint(0, 2) + (len(metrics(run_dir)) if run_dir.is_dir() else 0)
        while proc.poll() is None and not (
            (run_dir / "metrics.jsonl").is_file() and len(metrics(run_dir)) >= records
        ):
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        proc.kill()
        proc.wait()
        proc = cli("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path)
    status, err = finish(proc)
    assert status == 0, err
    assert equal(state(run_dir), whole)


@pytest.mark.parametrize(
    "fault",
    ["mid_write:last.pt:1", pytest.param("mid_write:config.yaml:1", marks=pytest.mark.slow)],
)
def test_a_kill_before_the_first_checkpoint_leaves_nothing_to_resume(tmp_path, whole_mle, fault):
    path, whole = whole_mle
    proc = cli("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path, fault=fault)
    assert finish(proc)[0] == -signal.SIGKILL
    run_dir = tmp_path / "runs" / "cut"
    status, err = finish(cli("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path))
    assert status == 2 and one_line_error(err) and "nothing to resume" in err, err
    again = cli("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path)
    status, err = finish(again)
    assert status == 0, err
    assert equal(state(tmp_path / "runs" / "cut-2"), whole)  # a fresh start


# -- a full disk ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        "enospc:last.pt:3",
        *(
            pytest.param(f, marks=pytest.mark.slow)
            for f in ("enospc:metrics.jsonl:2", "enospc:best.pt:2", "enospc:config.yaml:1")
        ),
    ],
)
def test_a_write_that_fails_for_lack_of_space_is_one_line_and_resumes(tmp_path, whole_mle, fault):
    """Every write fails as on a full disk (part of its bytes written): one line, exit 2; the
    run resumes bit-identical (before: a checkpoint's ENOSPC was torch's RuntimeError
    "unexpected pos 30 vs 0", a traceback and exit 1)."""
    path, whole = setup(tmp_path, "mle", "")
    proc = cli("train", str(path), "--quiet", "--set", "name=cut", cwd=tmp_path, fault=fault)
    status, err = finish(proc)
    assert status == 2 and one_line_error(err) and "No space left on device" in err, err
    run_dir = tmp_path / "runs" / "cut"
    status, err = finish(cli("train", "--quiet", "--resume", str(run_dir), cwd=tmp_path))
    if fault.startswith("enospc:config.yaml"):
        assert status == 2 and "nothing to resume" in err, err
        return
    assert status == 0, err
    assert equal(state(run_dir), whole)


def _fill(directory):
    """Writes zeros into ``directory/filler`` until the disk is full."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes(tmp_path):
    """A 3 MB tmpfs as output_dir, filled while the run trains: exit 2 with one line naming
    the problem, no torn checkpoint, no lost record; once space is freed the run resumes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)])
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        raw = config("mle", steps=100000, eval_every=5)
        raw["model"] = {"name": "realnvp", "couplings": 4, "hidden": [96, 96]}
        raw["output_dir"] = str(disk)
        path = tmp_path / "big.yaml"
        path.write_text(yaml.safe_dump(raw))
        run_dir = disk / "mle"
        proc = cli("train", str(path), "--quiet", cwd=tmp_path)
        while proc.poll() is None and not (
            (run_dir / "metrics.jsonl").is_file() and len(metrics(run_dir)) >= 2
        ):
            time.sleep(0.01)
        _fill(disk)
        status, err = finish(proc)
        assert status == 2 and one_line_error(err) and "No space left on device" in err, err
        last = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # complete, CRC-checked
        load_checkpoint(run_dir / "checkpoints" / "best.pt")
        records = [r for r in metrics_lenient(run_dir) if "event" not in r]  # evaluations
        kept = [r for r in records if r["step"] <= last["step"]]
        assert [r["step"] for r in kept] == list(range(5, last["step"] + 1, 5))  # none lost
        (disk / "filler").unlink()
        steps = f"train.steps={last['step'] + 10}"
        status, err = finish(
            cli("train", "--quiet", "--resume", str(run_dir), "--set", steps, cwd=tmp_path)
        )
        assert status == 0, err
        after = [r for r in metrics(run_dir) if "event" not in r]
        assert after[: len(kept)] == kept
        assert after[-1]["step"] == last["step"] + 10
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def metrics_lenient(run_dir):
    """The records, a torn last line left out."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


# -- hostile checkpoints and data files -------------------------------------------------------
class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncated(payload, last, tmp_path):
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])


def _bit_flip(payload, last, tmp_path):
    """One bit in the middle of the largest tensor's stored bytes (a flip in the archive's
    alignment padding changes no loaded byte, and resumes correctly)."""
    import struct
    import zipfile

    with zipfile.ZipFile(last) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(last.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0x10
    last.write_bytes(bytes(data))


def _another_run(payload, last, tmp_path):
    other = parse_config({**config("mle"), "name": "other", "output_dir": str(tmp_path)})
    other.model.options["couplings"] = 4
    done = train_run(other, progress=False, plots=False)
    last.write_bytes((done.run_dir / "checkpoints" / "last.pt").read_bytes())


def _nan_weights(payload, last, tmp_path):
    key = next(k for k, v in payload["model"].items() if v.is_floating_point())
    payload["model"][key].view(-1)[0] = float("nan")
    torch.save(payload, last)  # save_checkpoint would refuse it


def _small_optimizer_state(payload, last, tmp_path):
    entry = payload["optimizer"]["state"][0]
    entry["exp_avg"] = entry["exp_avg"].reshape(-1)[:1].clone()
    torch.save(payload, last)


def _code(payload, last, tmp_path):
    payload["config"] = Exploit(tmp_path / "executed")
    torch.save(payload, last)


HOSTILE_CHECKPOINTS = {
    "truncated": (_truncated, "truncated"),
    "bit_flip": (_bit_flip, "corrupt"),
    "another_run": (_another_run, "belongs to another run"),
    "nan_weights": (_nan_weights, "NaN or infinite"),
    "small_optimizer_state": (_small_optimizer_state, "has shape"),
    "code": (_code, "refused to load"),
}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A 20-step mle run stopped at step 10 (a copy is taken by each test)."""
    root = tmp_path_factory.mktemp("stopped")
    path = root / "mle.yaml"
    path.write_text(yaml.safe_dump(config("mle")))
    proc = cli("train", str(path), "--quiet", cwd=root, fault="before_rename:last.pt:4")
    assert finish(proc)[0] == -signal.SIGKILL
    return root / "runs" / "mle"


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(HOSTILE_CHECKPOINTS))
def test_a_hostile_checkpoint_is_one_line_and_keeps_the_history(
    tmp_path, stopped_run, case, monkeypatch, capsys
):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run, run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    edit, message = HOSTILE_CHECKPOINTS[case]
    payload = load_checkpoint(last)
    edit(payload, last, tmp_path)
    before = snapshot(run_dir)
    monkeypatch.chdir(tmp_path)
    status = main(["train", "--quiet", "--resume", str(run_dir)])
    err = capsys.readouterr().err
    assert status == 2 and one_line_error(err) and message in err, err
    assert not (tmp_path / "executed").exists()
    assert snapshot(run_dir) == before  # nothing rewritten, nothing removed


def _npy_of_objects(path, marker):
    np.save(path, np.array([Exploit(marker), 1.0], dtype=object), allow_pickle=True)


def _pickle_as_npy(path, marker):
    path.write_bytes(pickle.dumps(Exploit(marker)))


def _npz_of_objects(path, marker):
    np.savez(path, x=np.array([Exploit(marker)], dtype=object))


def _mixed_csv(path, marker):
    path.write_text("a,b\n1.0,2.0\n3.0,oops\n" + "".join(f"{i},{i}\n" for i in range(40)))


HOSTILE_DATA = {
    "objects.npy": (_npy_of_objects, "Python objects"),
    "pickle.npy": (_pickle_as_npy, "Python objects"),
    "objects.npz": (_npz_of_objects, "Python objects"),
    "mixed.csv": (_mixed_csv, "'b'"),
}


@pytest.mark.parametrize("name", list(HOSTILE_DATA))
def test_a_hostile_data_file_is_one_line_and_runs_nothing(tmp_path, name, monkeypatch, capsys):
    write, message = HOSTILE_DATA[name]
    marker = tmp_path / "executed"
    write(tmp_path / name, marker)
    monkeypatch.chdir(tmp_path)
    status = main(["train", "--data", name, "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and one_line_error(err) and message in err, err
    assert not marker.exists() and not (tmp_path / "runs").exists()


# -- two processes at once --------------------------------------------------------------------
@pytest.mark.slow
def test_two_runs_of_one_name_started_at_once_get_two_directories(tmp_path, whole_mle):
    path, whole = whole_mle
    procs = [cli("train", str(path), "--quiet", "--set", "name=twin", cwd=tmp_path) for _ in "ab"]
    for proc in procs:
        status, err = finish(proc)
        assert status == 0, err
    for name in ("twin", "twin-2"):
        assert equal(state(tmp_path / "runs" / name), whole)


@pytest.mark.slow
def test_two_resumes_of_one_run_at_once_one_gets_the_lock_error(tmp_path, whole_mle):
    """Both start together; whichever takes the lock pauses 3 s in its first write (injected),
    so the other meets the lock: one line, exit 2, nothing written; the winner ends
    bit-identical."""
    path, whole = whole_mle
    run_dir = tmp_path / "runs" / "cut"
    proc = cli(
        "train",
        str(path),
        "--quiet",
        "--set",
        "name=cut",
        cwd=tmp_path,
        fault="mid_write:last.pt:3",
    )
    assert finish(proc)[0] == -signal.SIGKILL
    args = ("train", "--quiet", "--resume", str(run_dir))
    procs = [cli(*args, cwd=tmp_path, fault="pause:metrics.jsonl:1") for _ in "ab"]
    results = sorted(finish(p) for p in procs)
    (ok, _), (locked, err) = results
    assert ok == 0 and locked == 2, results
    assert one_line_error(err) and "another process is training" in err, err
    assert equal(state(run_dir), whole)
