"""Headless Chromium for the browser tests: Debian's ``chromium`` package (``make test-browser``
installs it), driven by Playwright's Python package without its own browser download. Tests
skip with the reason when either is missing."""

import os
import shutil
from pathlib import Path

import pytest


def chromium_path():
    """Debian's chromium, or ``$FLOWFORGE_CHROMIUM``; ``None`` when there is none."""
    env = os.environ.get("FLOWFORGE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (the test extra)"
    )
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (make test-browser)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield b
        b.close()


def screenshot_dir():
    """Where tests leave screenshots for the docs (``$FLOWFORGE_SCREENSHOTS``), or None."""
    d = os.environ.get("FLOWFORGE_SCREENSHOTS")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        return Path(d)
    return None


def pixel_spread(png_bytes):
    """The standard deviation of a screenshot's pixel values in [0, 1] (0: a blank image)."""
    import io

    import matplotlib.image

    return float(matplotlib.image.imread(io.BytesIO(png_bytes), format="png")[..., :3].std())
