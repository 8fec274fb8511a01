"""The CLI's allocator settings: applied on glibc, skipped on request."""

import platform

import pytest

from flowforge.allocator import tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_allocator_applies_on_glibc():
    assert tune_allocator() is True
    assert tune_allocator() is True  # idempotent


def test_tune_allocator_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("FLOWFORGE_NO_MALLOC_TUNING", "1")
    assert tune_allocator() is False


def test_cli_tunes_the_allocator(monkeypatch):
    from flowforge import cli

    calls = []
    monkeypatch.setattr("flowforge.allocator.tune_allocator", lambda: calls.append(1) or True)
    assert cli.main(["list"]) == 0
    assert calls == [1]
