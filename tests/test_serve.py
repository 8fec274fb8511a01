"""`flowforge serve`: the playground's API (bad input gets a message, loopback only, the
user's 2-D file checked as `flowforge train --data` checks it) and, in headless Chromium, the
page's default trained to within 0.1 nats of the true entropy while the page updates, and a
user's CSV loaded and drawn."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from browser import browser, pixel_spread, screenshot_dir  # noqa: F401

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx", reason="starlette's test client needs httpx")

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import flowforge.serve.worker  # noqa: E402
from flowforge.cli import main  # noqa: E402
from flowforge.config import ConfigError, parse_config  # noqa: E402
from flowforge.data import toy  # noqa: E402
from flowforge.data.registry import load_dataset  # noqa: E402
from flowforge.runs.shorthand import data_file_config  # noqa: E402
from flowforge.serve import create_app, serve  # noqa: E402
from flowforge.serve.playground import DEFAULT, Playground  # noqa: E402


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "ws", interval=0.1), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize(
    "body, message",
    [
        ({"family": "nope"}, "unknown flow family"),
        ({"family": "realnvp", "points": []}, "drawing is empty"),
        ({"family": "realnvp", "points": [[1, 2]] * 5}, "at least 30"),
        ({"family": "realnvp", "points": [[1e9, 2]] * 40}, "values up to"),
        ({"family": "realnvp", "points": [[1, 2, 3]] * 40}, "pairs"),
        ({"family": "realnvp", "depth": 999}, "depth"),
        ({"family": "realnvp", "steps": "many"}, "steps"),
        ({"family": "realnvp", "data": "mnist"}, "unknown data set"),
    ],
)
def test_bad_input_gets_a_message(client, body, message):
    r = client.post("/api/runs", json=body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_nan_points_and_non_json(client):
    json = {"Content-Type": "application/json"}
    r = client.post(
        "/api/runs", content=b'{"family": "realnvp", "points": [[NaN, 1]]}', headers=json
    )
    assert "NaN" in r.json()["error"]
    assert "not JSON" in client.post("/api/runs", content=b"{oops", headers=json).json()["error"]
    assert client.get("/api/runs/..%2Fetc").status_code == 404
    assert client.post("/api/runs/nosuch/stop", json={}).status_code == 409


def write_csv(path, rows, header="a,b"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def points_csv(path, n=200):
    return write_csv(path, np.random.default_rng(0).normal(size=(n, 2)).round(4).tolist())


def upload(client, name, content):
    return client.post("/api/data/upload", content=content, headers={"X-Filename": name})


def test_a_toy_data_set_is_drawn_before_training(client):
    d = client.get("/api/data/moons").json()
    assert len(d["points"]) == 1000 and d["rows"] == 17000 and len(d["box"]) == 4
    assert d["entropy"] == pytest.approx(toy.ENTROPY["moons"].value)
    assert client.get("/api/data/mnist").status_code == 404
    opts = client.get("/api/options").json()
    assert opts["default"]["data"] in opts["data"] and opts["default"]["family"] in opts["families"]


def test_a_users_csv_by_upload_or_by_path(client, tmp_path):
    csv = points_csv(tmp_path / "My Points.csv")
    values = np.loadtxt(csv, delimiter=",", skiprows=1)
    by_path = client.post("/api/data/path", json={"path": str(csv)}).json()
    by_upload = upload(client, "My Points.csv", csv.read_bytes()).json()
    for d in (by_path, by_upload):
        assert d["rows"] == 200 and d["entropy"] is None and d["name"] == "My Points.csv"
        assert len(d["points"]) == 160  # the training split, as `train --data` splits
        shown = np.array(d["points"])
        assert np.abs(shown[:, None] - values[None]).sum(2).min(1).max() < 1e-4  # file rows
    assert by_path["source"] == {"path": str(csv.resolve())}
    playground = client.app.state.playground
    for source in (by_path["source"], by_upload["source"]):
        name, raw, _ = playground.config({"family": "realnvp", **source})
        file = raw["data"]["path"]
        assert raw["data"] == data_file_config(file)["data"] and name.startswith("realnvp-my-")
    # the upload is a copy in the workspace, under a random name; the path is the user's file
    assert by_upload["source"]["file"].startswith("upload-")
    assert (playground.uploads / by_upload["source"]["file"]).read_bytes() == csv.read_bytes()


def test_a_file_in_small_units_is_drawn_in_them(client, tmp_path):
    rows = (np.random.default_rng(1).normal(size=(100, 2)) * 1e-6).tolist()
    d = client.post("/api/data/path", json={"path": str(write_csv(tmp_path / "s.csv", rows))})
    shown = np.array(d.json()["points"])
    assert len(np.unique(shown[:, 0])) == len(shown) and np.abs(shown).max() < 1e-5


def _train_data_error(path):
    """The message `flowforge train --data PATH` stops with (its config, then its loader)."""
    try:
        section = data_file_config(str(path))["data"]
        options = {k: v for k, v in section.items() if k not in ("name", "n_train", "n_val")}
        load_dataset("file", section["n_train"], section["n_val"], **options)
    except (ValueError, ConfigError) as e:
        return str(e).removeprefix("--data: ")
    return None


@pytest.mark.parametrize(
    "name, rows, header, message",
    [
        ("three.csv", [[1, 2, 3]] * 50, "a,b,c", "fits 2-D data, and this file has 3 columns"),
        ("one.csv", [[1]] * 50, "a", "has 1 column (a)"),
        ("text.csv", [[1, "x"]] * 50, "a,b", "is not numeric"),
        ("nan.csv", [[1, 2]] * 40 + [["nan", 2]], "a,b", "NaN or infinite"),
        ("flat.csv", [[i, 5] for i in range(50)], "a,b", "constant"),
        ("few.csv", [[1, 2]] * 3, "a,b", "too few"),
        ("notes.txt", [[1, 2]] * 50, "a,b", "unknown format"),
    ],
)
def test_a_file_is_refused_as_train_data_refuses_it(client, tmp_path, name, rows, header, message):
    path = write_csv(tmp_path / name, rows, header)
    by_path = client.post("/api/data/path", json={"path": str(path)})
    by_upload = upload(client, name, path.read_bytes())
    for r in (by_path, by_upload):
        assert r.status_code == 400 and message in r.json()["error"], r.json()
        assert name in r.json()["error"] and "upload-" not in r.json()["error"]  # the user's name
    expected = _train_data_error(path)
    if expected is not None and message in expected:  # --data stops on the same problem
        assert expected in by_path.json()["error"]  # with the very same message
    # (a text column: --data leaves it out of the features, the 2-D playground needs it)
    uploads = client.app.state.playground.uploads
    assert not list(uploads.glob("upload-*"))  # a refused upload is not kept


def test_upload_limits_and_file_handles(client, tmp_path, monkeypatch):
    monkeypatch.setattr("flowforge.serve.app.MAX_FILE_BYTES", 1000)
    monkeypatch.setattr("flowforge.serve.sources.MAX_FILE_BYTES", 1000)
    big = points_csv(tmp_path / "big.csv", 200).read_bytes()
    r = upload(client, "big.csv", big)
    assert r.status_code == 413 and "over" in r.json()["error"]
    r = client.post("/api/data/path", json={"path": str(tmp_path / "big.csv")})
    assert r.status_code == 400 and "MiB" in r.json()["error"]
    assert "X-Filename" in client.post("/api/data/upload", content=b"a,b\n").json()["error"]
    assert "file not found" in client.post("/api/data/path", json={"path": "/no/x.csv"}).text
    for handle in ("../../etc/passwd", "upload-0123456789abcdef.csv", 7):
        r = client.post("/api/runs", json={"family": "realnvp", "file": handle})
        assert r.status_code == 400 and "no uploaded file" in r.json()["error"]
    r = client.post("/api/runs", json={"family": "realnvp", "path": "/x.csv", "points": [[1, 2]]})
    assert "one source of data" in r.json()["error"]


def test_only_loopback_hosts_and_json_posts_are_answered(client, tmp_path):
    csv = points_csv(tmp_path / "p.csv")
    # another site's page cannot post a path without a preflight, nor reach us by DNS rebinding
    plain = client.post(
        "/api/data/path", content=f'{{"path": "{csv}"}}', headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 400 and "not JSON" in plain.json()["error"]
    rebound = client.get("/api/data/moons", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 400
    assert client.get("/api/data/moons", headers={"Host": "localhost:8000"}).status_code == 200


def test_refuses_a_non_loopback_address_unless_asked(tmp_path):
    with pytest.raises(ConfigError, match="--allow-remote"):
        serve("0.0.0.0", 0, tmp_path)


class FakeWorker:
    """A worker process that trains nothing: alive from ``start`` until ``terminate``."""

    def __init__(self, target, args, name, daemon):
        self.args, self.alive = args, False

    def start(self):
        self.alive = True

    def is_alive(self):
        return self.alive

    def terminate(self):
        self.alive = False

    def join(self, timeout=None):
        pass


@pytest.fixture
def idle(tmp_path, monkeypatch):
    """A client whose playground starts :class:`FakeWorker` s (at most 2 at once)."""
    app = create_app(tmp_path / "ws", interval=0.1, max_trainings=2)
    workers = []

    def process(**kwargs):
        workers.append(FakeWorker(**kwargs))
        return workers[-1]

    monkeypatch.setattr(app.state.playground, "_mp", SimpleNamespace(Process=process))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        c.workers = workers
        yield c


def make_run(workspace, name, data, **files):
    """A run folder ``name`` with a config.yaml whose data section is ``data``."""
    folder = workspace / name
    (folder / "checkpoints").mkdir(parents=True)
    raw = {"name": name, "seed": 0, "data": data, "model": {"name": "realnvp"}, "train": {}}
    (folder / "config.yaml").write_text(yaml.safe_dump(raw))
    for path, content in files.items():
        (folder / path).write_bytes(content)
    return folder


def test_the_zip_holds_only_the_run_folders_own_regular_files(idle, tmp_path):
    ws = idle.app.state.playground.workspace
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:SECRET:0:0\n")
    run = make_run(ws, "realnvp-moons-000001", {"name": "moons"}, **{"metrics.jsonl": b"{}\n"})
    (run / "plots").mkdir()
    (run / "plots" / "leak.png").symlink_to(secret / "passwd")  # a link to a file outside
    (run / "linked").symlink_to(secret, target_is_directory=True)  # and to a folder
    (run / "checkpoints" / "last.pt").write_bytes(b"weights")
    (run / ".lock").write_bytes(b"")
    (run / "checkpoints" / ".best.pt.x1y2.flowforge.tmp").write_bytes(b"half")  # a killed write
    (run / "notes.tmp").write_bytes(b"the user's")  # a file of the user's, kept
    os.mkfifo(run / "pipe")  # read, it would block the archive forever
    zipped = idle.get("/api/runs/realnvp-moons-000001/download")
    assert zipped.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    kept = ("checkpoints/last.pt", "config.yaml", "metrics.jsonl", "notes.tmp")
    assert sorted(names) == [f"realnvp-moons-000001/{f}" for f in kept]
    assert b"SECRET" not in zipped.content
    # a run folder that is itself a link to a folder elsewhere is no run of the playground
    (ws / "realnvp-moons-000002").symlink_to(run, target_is_directory=True)
    for route in ("download", "events", ""):
        assert idle.get(f"/api/runs/realnvp-moons-000002/{route}").status_code == 404
    listed = [r["run"] for r in idle.get("/api/runs").json()["runs"]]
    assert listed == ["realnvp-moons-000001"]


@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json", "checkpoints/best.pt"])
def test_the_view_refuses_a_run_file_that_is_a_link(idle, tmp_path, name):
    ws = idle.app.state.playground.workspace
    run = make_run(ws, "realnvp-moons-000001", {"name": "moons"})
    (tmp_path / "elsewhere").write_text("{}\n")
    (run / name).symlink_to(tmp_path / "elsewhere")
    v = idle.get("/api/runs/realnvp-moons-000001").json()
    assert f"{name} is a symbolic link" in v["view_error"] and v["records"] == []


def test_a_run_is_shown_only_on_data_the_playground_made(idle, tmp_path):
    playground = idle.app.state.playground
    ws = playground.workspace
    foreign = points_csv(tmp_path / "foreign.csv")  # the user's file, never uploaded
    rows = np.loadtxt(foreign, delimiter=",", skiprows=1)
    playground.uploads.mkdir(parents=True)
    linked = playground.uploads / "upload-0123456789abcdef.csv"
    linked.symlink_to(foreign)  # a link planted among the uploads
    named = tmp_path / "upload-00000000000000aa.csv"  # named as an upload, outside .data
    named.write_bytes(foreign.read_bytes())
    section = data_file_config(str(foreign))["data"]
    sections = {
        "outside": section,
        "through-dots": {**section, "path": f"{playground.uploads}/../../{named.name}"},
        "linked-upload": {**section, "path": str(linked)},
        "toy-resized": {"name": "moons", "n_train": 50000, "n_val": 2000, "n_test": 5000},
        "other-data": {"name": "mnist", "n_train": 100, "n_val": 10, "n_test": 10},
        "not-a-mapping": ["moons"],
    }
    for label, data in sections.items():
        name = f"realnvp-{label}-000001"
        make_run(ws, name, data, **{"checkpoints/last.pt": b"weights"})
        v = idle.get(f"/api/runs/{name}")
        assert v.status_code == 200 and "data" not in v.json() and "box" not in v.json(), label
        assert "not one the playground made" in v.json()["view_error"], label
        r = idle.post(f"/api/runs/{name}/resume", json={"steps": 20})
        assert r.status_code == 409 and "not one the playground made" in r.json()["error"]
    assert not idle.workers  # nothing was resumed
    # a data set it made is shown: a toy one, and an upload
    make_run(
        ws,
        "realnvp-moons-000001",
        {"name": "moons", "n_train": 10000, "n_val": 2000, "n_test": 5000},
    )
    assert len(idle.get("/api/runs/realnvp-moons-000001").json()["data"]) == 1000
    source = upload(idle, "mine.csv", foreign.read_bytes()).json()["source"]
    own = data_file_config(str(playground.uploads / source["file"]))["data"]
    make_run(ws, "realnvp-mine-000001", own)
    shown = np.array(idle.get("/api/runs/realnvp-mine-000001").json()["data"])
    assert np.abs(shown[:, None] - rows[None]).sum(2).min(1).max() < 1e-4
    drawn = rows[:40].round(3).tolist()
    run = idle.post("/api/runs", json={"family": "realnvp", "points": drawn}).json()["run"]
    make_run(ws, run, parse_config(idle.workers[-1].args[1]).to_dict()["data"])
    assert len(idle.get(f"/api/runs/{run}").json()["data"]) == 32  # drawn points: its own
    assert [r["run"] for r in idle.get("/api/runs").json()["runs"]].count(run) == 1


def test_a_typed_path_trains_on_a_copy_in_the_workspace(idle, tmp_path):
    playground = idle.app.state.playground
    csv = points_csv(tmp_path / "typed.csv")
    content = csv.read_bytes()
    run = idle.post("/api/runs", json={"family": "realnvp", "path": str(csv)}).json()["run"]
    raw = idle.workers[-1].args[1]
    copy = Path(raw["data"]["path"])
    assert copy.parent == playground.uploads and copy.read_bytes() == content
    assert raw["data"] == data_file_config(str(copy))["data"] and run.startswith("realnvp-typed-")
    csv.unlink()  # the run keeps its data, and the page shows it
    make_run(playground.workspace, run, parse_config(raw).to_dict()["data"])
    assert len(idle.get(f"/api/runs/{run}").json()["data"]) == 160


def route_urls(app):
    """Every route of ``app`` as (method, url), its path parameters filled in."""
    for route in app.routes:
        path = route.path.replace("{name}", "moons").replace("{run}", "realnvp-moons-000001")
        for method in getattr(route, "methods", None) or ["GET"]:
            if method != "HEAD":
                yield method, path + ("/index.html" if path == "/static" else "")


def test_every_route_answers_its_own_host_only(idle):
    make_run(idle.app.state.playground.workspace, "realnvp-moons-000001", {"name": "moons"})
    urls = list(route_urls(idle.app))
    assert len(urls) >= 13
    for method, url in urls:
        for host in ("evil.example:8000", "127.0.0.1.evil.example", "", "localhost.:80"):
            r = idle.request(method, url, headers={"Host": host}, json={})
            assert r.status_code == 400 and "not this playground's address" in r.text, (url, host)
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
            if url.endswith("/events"):  # answered: a stream that does not end
                continue
            r = idle.request(method, url, headers={"Host": host}, json={})
            assert "not this playground's address" not in r.text, (url, host)
    assert not idle.workers


def test_writes_from_another_sites_page_are_refused(idle, tmp_path):
    start = {"family": "realnvp", "depth": 1, "steps": 20}
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:3000"},  # another port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        r = idle.post("/api/runs", json=start, headers=headers)
        assert r.status_code == 403 and "another site" in r.json()["error"], headers
        # a form's text/plain POST, which needs no preflight
        plain = {**headers, "Content-Type": "text/plain"}
        r = idle.post("/api/runs", content=json.dumps(start), headers=plain)
        assert r.status_code == 403, headers
        assert idle.get("/api/runs", headers=headers).status_code == 403  # nor read the API
    assert not idle.workers and not list(idle.app.state.playground.workspace.glob("realnvp-*"))
    # a link from another site still opens the page; the page's own requests pass
    assert idle.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    own = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}
    assert idle.post("/api/runs", json=start, headers=own).status_code == 200
    assert len(idle.workers) == 1


def test_request_bodies_are_bounded_before_they_are_read(idle, monkeypatch):
    parsed = []
    reader = SimpleNamespace(loads=parsed.append, JSONDecodeError=json.JSONDecodeError)
    monkeypatch.setattr("flowforge.serve.app.json", reader)  # the app's JSON parser
    huge = b'{"family": "realnvp", "x": "' + b"a" * (30 * 2**20) + b'"}'
    json_type = {"Content-Type": "application/json"}
    r = idle.post("/api/runs", content=huge, headers=json_type)
    assert r.status_code == 413 and "over 2 MiB" in r.json()["error"]

    def chunked():  # no Content-Length: counted as it comes
        for _ in range(30):
            yield b"a" * 2**20

    r = idle.post("/api/data/path", content=chunked(), headers=json_type)
    assert r.status_code == 413 and "over 2 MiB" in r.json()["error"]
    r = idle.post("/api/data/upload", content=chunked(), headers={"X-Filename": "big.csv"})
    assert r.status_code == 413 and "over 20 MiB" in r.json()["error"]
    assert not parsed and not idle.workers
    r = idle.post("/api/runs", content=b"{}", headers={**json_type, "Content-Length": "x"})
    assert r.status_code == 400


NOT_STRINGS = [[], ["realnvp"], {}, {"a": "b"}, None, True, -1, 1e308, "x" * 5000]


@pytest.mark.parametrize(
    "field", ["family", "depth", "steps", "lr", "data", "points", "file", "filename", "path"]
)
def test_wrong_types_and_deep_nesting_are_a_4xx_with_a_message(idle, field):
    for value in NOT_STRINGS:
        r = idle.post("/api/runs", json={"family": "realnvp", "depth": 1, field: value})
        assert r.status_code in (200, 400), (field, value, r.text)
        assert r.status_code == 200 or r.json()["error"], (field, value)
        for worker in idle.workers:  # (a started run: room for the next one)
            worker.alive = False
    for url in ("/api/runs", "/api/data/path", "/api/runs/realnvp-x-000001/resume"):
        for body in ([field], {field: {field: [[[[[[[[[1]]]]]]]]]}}, "x", 3, None):
            r = idle.post(url, json=body)
            assert 400 <= r.status_code < 500 and r.json()["error"], (url, body)
    deep = b"[" * 100_000 + b"]" * 100_000
    r = idle.post("/api/runs", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nests deeper than 8" in r.json()["error"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "-1"], "--port: should be a whole number in [0, 65535], got -1"),
        (["--port", "70000"], "--port"),
        (["--max-trainings", "0"], "--max-trainings"),
        (["--host", "0.0.0.0"], "--allow-remote"),
        (["--host", ""], "--host"),
        (["--port", "IN_USE"], "Address already in use"),
        (["--workspace", "A_FILE"], "File exists"),
    ],
)
def test_bad_serve_values_are_one_line_and_exit_2(args, message, capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        (tmp_path / "file").write_text("")
        values = {"IN_USE": port, "A_FILE": str(tmp_path / "file")}
        args = [values.get(a, a) for a in args]
        workspace = [] if "--workspace" in args else ["--workspace", str(tmp_path / "ws")]
        assert main(["serve", *args, *workspace]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def alive(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    psutil = pytest.importorskip("psutil")
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# a process whose parent is the test's: it stops itself once that parent is gone
WATCHED = """import importlib.util, os, signal, sys, time
spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)  # worker.py alone, without torch
worker.GRACE_SECONDS = 0.5
def stop(signum, frame):
    open(sys.argv[2], "w").write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop if sys.argv[3] == "obeys" else signal.SIG_IGN)
worker.watch_parent(os.getppid(), 0.05)
open(sys.argv[2] + ".ready", "w").close()
time.sleep(60)
"""
PARENT = """import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("child", ["obeys", "ignores"])
def test_a_worker_stops_when_its_server_is_gone(tmp_path, child):
    """The parent check of the training worker: its parent killed with SIGKILL, it sends
    itself SIGTERM (the trainer saves ``last.pt`` and stops); one that ignores it exits after
    the grace period."""
    marker = tmp_path / "stopped"
    script = str(Path(flowforge.serve.worker.__file__))
    args = [sys.executable, "-c", PARENT, WATCHED, script, str(marker), child]
    parent = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    try:
        deadline = time.time() + 30
        while not Path(f"{marker}.ready").exists():
            assert time.time() < deadline
            time.sleep(0.02)
        assert alive(pid)
        parent.kill()
        parent.wait()
        deadline = time.time() + 10
        while alive(pid):
            assert time.time() < deadline, "the worker outlived its parent"
            time.sleep(0.05)
        assert marker.exists() == (child == "obeys")
    finally:
        parent.kill()
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_training_workers_end_with_the_server(tmp_path):
    """A server killed with SIGKILL cannot stop its workers: each notices that its parent is
    gone, saves ``last.pt`` and stops, as the stop button makes it."""
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "flowforge", "serve", "--port", "0", "--workspace", str(ws)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        url = server.stdout.readline().split()[3]
        request = urllib.request.Request(
            f"{url}api/runs",
            data=json.dumps({"family": "realnvp", "depth": 16, "steps": 20000}).encode(),
            headers={"Content-Type": "application/json"},
        )
        run = json.load(urllib.request.urlopen(request, timeout=30))["run"]
        status, deadline = ws / ".status" / f"{run}.json", time.time() + 120
        while not (ws / run / "checkpoints" / "last.pt").is_file():  # training, SIGTERM handled
            assert time.time() < deadline and server.poll() is None
            time.sleep(0.2)
        worker = json.loads(status.read_text())["pid"]
        server.kill()
        server.wait()
        deadline = time.time() + 30
        while alive(worker):
            assert time.time() < deadline, "the worker outlived its server"
            time.sleep(0.2)
        assert json.loads(status.read_text())["state"] == "stopped"
        assert (ws / run / "checkpoints" / "last.pt").is_file()
    finally:
        server.kill()
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_at_most_max_trainings_train_at_once(idle):
    start = {"family": "realnvp", "depth": 1, "steps": 20}
    first, second = (idle.post("/api/runs", json=start) for _ in range(2))
    assert first.status_code == second.status_code == 200
    third = idle.post("/api/runs", json=start)
    assert third.status_code == 429 and "2 runs are training already" in third.json()["error"]
    drawn = idle.post(
        "/api/runs", json={"family": "realnvp", "points": [[i, i % 7] for i in range(40)]}
    )
    assert drawn.status_code == 429 and not list(idle.app.state.playground.uploads.glob("*"))
    run = first.json()["run"]
    make_run(
        idle.app.state.playground.workspace,
        run,
        {"name": "moons", "n_train": 10000, "n_val": 2000, "n_test": 5000},
        **{"checkpoints/last.pt": b"weights"},
    )
    idle.post(f"/api/runs/{run}/stop", json={})
    assert len(idle.workers) == 2 and not idle.workers[0].alive
    assert idle.post("/api/runs", json=start).status_code == 200  # one ended: room for one
    resumed = idle.post(f"/api/runs/{run}/resume", json={"steps": 20})
    assert resumed.status_code == 429 and "--max-trainings" in resumed.json()["error"]
    assert len(idle.workers) == 3


def wait(client, run, deadline):
    while (v := client.get(f"/api/runs/{run}").json())["state"] in ("starting", "training"):
        assert time.time() < deadline
        time.sleep(0.3)
    return v


def test_a_run_trains_in_a_worker_and_the_view_follows(client, tmp_path):
    run = client.post(
        "/api/runs", json={"family": "realnvp", "depth": 2, "steps": 40, "data": "moons"}
    ).json()["run"]
    # and beside it a run on the user's uploaded CSV
    loaded = upload(client, "pts.csv", points_csv(tmp_path / "pts.csv").read_bytes()).json()
    request = {"family": "realnvp", "depth": 1, "steps": 20, **loaded["source"]}
    on_file = client.post("/api/runs", json=request).json()["run"]
    deadline = time.time() + 120
    v = wait(client, run, deadline)
    assert v["state"] == "finished", v
    assert v["records"] and v["density"]["n"] == 64 and len(v["stages"]) >= 2
    assert v["summary"]["test_nll"] > 0 and v["entropy"] == pytest.approx(v["summary"]["entropy"])
    f = wait(client, on_file, deadline)
    assert f["state"] == "finished" and on_file.startswith("realnvp-pts-"), f
    assert f["data"] == loaded["points"] and f["entropy"] is None and "gap" not in f["summary"]
    assert f["summary"]["steps"] == 20 and f["density"]["n"] == 64
    # a server started after the user's file went away still shows the run's numbers
    playground = client.app.state.playground
    (playground.uploads / loaded["source"]["file"]).unlink()
    gone = Playground(playground.workspace).view(on_file)
    assert "cannot be read" in gone["view_error"] and gone["summary"] == f["summary"]
    assert client.get(f"/api/runs/{on_file}").json()["data"] == loaded["points"]  # cached
    # a loss that is not a number reaches the page as null (JSON has no NaN)
    metrics = client.app.state.playground.workspace / on_file / "metrics.jsonl"
    with metrics.open("a") as out:
        out.write('{"step": 21, "train_nll": NaN, "val_nll": Infinity}\n')
    assert client.get(f"/api/runs/{on_file}").json()["records"][-1] == {
        "step": 21,
        "train": None,
        "val": None,
    }
    # resume for more steps, a second resume while it trains is refused (another tab)
    assert client.post(f"/api/runs/{run}/resume", json={"steps": 20}).status_code == 200
    second = client.post(f"/api/runs/{run}/resume", json={"steps": 20})
    assert second.status_code == 409 and "training already" in second.json()["error"]
    assert wait(client, run, deadline + 60)["summary"]["steps"] == 60
    zipped = client.get(f"/api/runs/{run}/download")
    assert zipped.headers["content-type"] == "application/zip" and len(zipped.content) > 1000


@pytest.fixture
def server(tmp_path):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(tmp_path / "ws", interval=0.2)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app.state.playground
    srv.should_exit = True
    thread.join(timeout=20)


# whether the canvas ID has a painted pixel
BLANK = """(() => { const c = document.getElementById("ID");
  return c.getContext("2d").getImageData(0, 0, c.width, c.height).data.some((v) => v > 0); })()"""


def in_view(page, selector):
    """Whether every element ``selector`` matches lies wholly inside the window."""
    size = page.viewport_size
    boxes = [
        page.locator(selector).nth(i).bounding_box() for i in range(page.locator(selector).count())
    ]
    return bool(boxes) and all(
        b["x"] >= 0
        and b["y"] >= 0
        and b["x"] + b["width"] <= size["width"]
        and b["y"] + b["height"] <= size["height"]
        for b in boxes
    )


@pytest.mark.slow
def test_the_default_trains_to_the_entropy_in_a_browser(browser, server, tmp_path):  # noqa: F811
    url, playground = server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    # the default data set is drawn as soon as the page opens, before any training
    page.wait_for_function("document.getElementById('data-caption').textContent.includes('points')")
    assert DEFAULT["data"] in page.inner_text("#data-caption")
    assert pixel_spread(page.locator("#draw").screenshot()) > 0.02
    assert not page.evaluate(BLANK.replace("ID", "density"))  # nothing trained yet
    shots = screenshot_dir()

    # bad input: an empty drawing gets a message on the page
    page.check("#draw-mode")
    page.click("#train")
    page.wait_for_selector("#message:not([hidden])")
    assert "empty" in page.inner_text("#message")
    page.uncheck("#draw-mode")

    # the page's defaults, as a new user finds them
    assert page.input_value("#family") == DEFAULT["family"]
    assert page.input_value("#steps") == str(DEFAULT["steps"])
    page.click("#train")
    started, steps_seen = time.time(), set()
    while page.inner_text("#state") != "finished":
        assert time.time() < started + 300, page.inner_text("#state")
        assert page.inner_text("#state") != "error", page.inner_text("#message")
        steps_seen.add(page.inner_text("#step"))
        time.sleep(0.2)
    seconds = time.time() - started
    assert len(steps_seen - {"—"}) >= 3, steps_seen  # the page updated while training
    run = page.inner_text("#run")
    summary = playground.view(run)["summary"]
    assert float(page.inner_text("#test-nll")) == pytest.approx(summary["test_nll"], abs=1e-4)
    assert float(page.inner_text("#gap")) == pytest.approx(summary["gap"], abs=1e-4)
    assert float(page.inner_text("#entropy")) == pytest.approx(summary["entropy"], abs=1e-3)
    assert summary["gap"] < 0.1, summary
    print(f"the default: gap {summary['gap']:.4f} nats in {seconds:.0f} s (page to finish)")
    page.wait_for_selector("#layers canvas")
    for sel in (
        "#density",
        "#samples",
        "#loss",
        "#layers canvas >> nth=0",
        "#layers canvas >> nth=-1",
    ):
        assert pixel_spread(page.locator(sel).screenshot()) > 0.02, sel
    # every panel, the layer grids included, is on the screen at once (1280 x 800)
    assert in_view(page, "#panels canvas") and in_view(page, "#layers canvas")
    if shots:
        page.screenshot(path=str(shots / "playground.png"))

    # the user's own CSV by its path: drawn at once; a 3-column upload is refused on the page
    csv = tmp_path / "ring.csv"
    angle = np.random.default_rng(0).uniform(0, 2 * np.pi, 400)
    write_csv(csv, np.stack([np.cos(angle), np.sin(angle)], 1).round(3).tolist(), "u,v")
    page.fill("#path", str(csv))
    page.click("#open-path")
    page.wait_for_function("document.getElementById('data-caption').textContent.includes('ring')")
    assert "400 rows" in page.inner_text("#data-caption")
    assert page.inner_text("#entropy") == "unknown"
    assert pixel_spread(page.locator("#draw").screenshot()) > 0.02
    page.set_input_files(
        "#upload", str(write_csv(tmp_path / "wide.csv", [[1, 2, 3]] * 40, "a,b,c"))
    )
    page.wait_for_selector("#message:not([hidden])")
    assert "2-D data" in page.inner_text("#message") and "wide.csv" in page.inner_text("#message")
    assert not errors, errors
    page.close()
