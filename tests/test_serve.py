"""`flowforge serve`: the playground's API (bad input gets a message, loopback only) and, in
headless Chromium, a RealNVP trained on moons to within 0.1 nats of the true entropy while the
page updates."""

import socket
import threading
import time

import pytest

from browser import browser, pixel_spread, screenshot_dir  # noqa: F401

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx", reason="starlette's test client needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from flowforge.config import ConfigError  # noqa: E402
from flowforge.serve import create_app, serve  # noqa: E402


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "ws", interval=0.1)) as c:
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
    r = client.post("/api/runs", content=b'{"family": "realnvp", "points": [[NaN, 1]]}')
    assert "NaN" in r.json()["error"]
    assert "not JSON" in client.post("/api/runs", content=b"{oops").json()["error"]
    assert client.get("/api/runs/..%2Fetc").status_code == 404
    assert client.post("/api/runs/nosuch/stop").status_code == 409


def test_refuses_a_non_loopback_address_unless_asked(tmp_path):
    with pytest.raises(ConfigError, match="--allow-remote"):
        serve("0.0.0.0", 0, tmp_path)


def test_a_run_trains_in_a_worker_and_the_view_follows(client):
    run = client.post(
        "/api/runs", json={"family": "realnvp", "depth": 2, "steps": 40, "data": "moons"}
    ).json()["run"]
    deadline = time.time() + 90
    while (v := client.get(f"/api/runs/{run}").json())["state"] not in ("finished", "error"):
        assert time.time() < deadline
        time.sleep(0.3)
    assert v["state"] == "finished", v
    assert v["records"] and v["density"]["n"] == 64 and len(v["stages"]) >= 2
    assert v["summary"]["test_nll"] > 0 and v["entropy"] == pytest.approx(v["summary"]["entropy"])
    # resume for more steps, a second resume while it trains is refused (another tab)
    assert client.post(f"/api/runs/{run}/resume", json={"steps": 20}).status_code == 200
    second = client.post(f"/api/runs/{run}/resume", json={"steps": 20})
    assert second.status_code == 409 and "training already" in second.json()["error"]
    while client.get(f"/api/runs/{run}").json()["state"] in ("training", "starting"):
        time.sleep(0.3)
    assert client.get(f"/api/runs/{run}").json()["summary"]["steps"] == 60
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


@pytest.mark.slow
def test_playground_trains_realnvp_on_moons_to_the_entropy_in_a_browser(browser, server):  # noqa: F811
    url, playground = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("document.getElementById('family').options.length > 0")

    # bad input: an empty drawing gets a message on the page
    page.check("#draw-mode")
    page.click("#train")
    page.wait_for_selector("#message:not([hidden])")
    assert "empty" in page.inner_text("#message")
    page.uncheck("#draw-mode")

    page.select_option("#data", "moons")
    page.select_option("#family", "realnvp")
    page.fill("#depth", "6")
    page.fill("#steps", "800")
    page.click("#train")
    steps_seen = set()
    deadline = time.time() + 240
    while page.inner_text("#state") != "finished":
        assert time.time() < deadline, page.inner_text("#state")
        assert page.inner_text("#state") != "error", page.inner_text("#message")
        steps_seen.add(page.inner_text("#step"))
        time.sleep(0.2)
    assert len(steps_seen - {"—"}) >= 3, steps_seen  # the page updated while training
    run = page.inner_text("#run")
    summary = playground.view(run)["summary"]
    assert float(page.inner_text("#test-nll")) == pytest.approx(summary["test_nll"], abs=1e-4)
    assert float(page.inner_text("#gap")) == pytest.approx(summary["gap"], abs=1e-4)
    assert float(page.inner_text("#entropy")) == pytest.approx(summary["entropy"], abs=1e-4)
    assert summary["gap"] < 0.1, summary
    page.wait_for_selector("#layers canvas")
    for sel in (
        "#density",
        "#samples",
        "#loss",
        "#layers canvas >> nth=0",
        "#layers canvas >> nth=-1",
    ):
        assert pixel_spread(page.locator(sel).screenshot()) > 0.02, sel
    assert not errors, errors
    shots = screenshot_dir()
    if shots:
        page.screenshot(path=str(shots / "playground.png"), full_page=True)
    page.close()
