"""Helper scripts: the parts that are not covered through the library."""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_curve_every_skips_checkpoints_closer_than_n_steps():
    due = _load("image_curve").due
    evaluated, last = [], None
    for step in range(250, 3001, 250):
        if due(step, last, 1000):
            evaluated.append(step)
            last = step
    assert evaluated == [250, 1250, 2250]
    assert due(500, 250, 0)  # the default evaluates every checkpoint


def test_image_curve_peak_memory_follows_a_wrapper_to_its_child():
    image_curve = _load("image_curve")
    grow = "b = bytes(1) * (200 * 2**20); import time; time.sleep(30)"  # 200 MiB, written
    wrapper = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{grow}"; true'])
    try:
        for _ in range(100):  # until the child has touched its memory
            peak = image_curve.peak_rss_mb(wrapper.pid)
            if peak and peak > 200:
                break
            subprocess.run(["sleep", "0.1"])
        assert peak > 200  # the shell alone is a few MiB
    finally:
        for task in Path(f"/proc/{wrapper.pid}/task").iterdir():  # the child first
            for child in (task / "children").read_text().split():
                os.kill(int(child), signal.SIGKILL)
        wrapper.kill()
        wrapper.wait()
    assert image_curve.peak_rss_mb(wrapper.pid) is None  # gone: no figure rather than a wrong one
