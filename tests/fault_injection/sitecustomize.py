"""Fault injection for ``tests/test_faults.py``: imported at start-up by any Python process that
has this folder first on ``PYTHONPATH``; does nothing unless ``FLOWFORGE_FAULT`` is set.

``FLOWFORGE_FAULT=WHEN:FILE:N`` acts at the ``N``-th write (1-based: the ``N``-th time the file
named ``FILE``, or a temporary file for it, is opened for writing) by this process. ``FILE`` is
``last.pt``, ``best.pt``, ``config.yaml``, ``metrics.jsonl`` or ``summary.json``; ``WHEN`` is

- ``mid_write``: SIGKILL halfway through the write: an atomic rewrite's temporary file is cut
  to half its bytes, an append writes half its line;
- ``before_rename``: SIGKILL once the temporary file is written and fsynced, before the rename
  (an append: right after the whole line is written);
- ``after_rename``: SIGKILL right after the rename, before the directory's fsync;
- ``pause``: sleeps 3 s before the write, then writes (another process can start meanwhile);
- ``enospc``: the write fails as on a full disk, ``OSError(ENOSPC)`` from the file object's
  ``write`` after part of the bytes went to the file, so the code's own error handling runs.

Only generic functions are patched (``open``, ``os.fdopen``, ``os.fsync``, ``os.replace``),
never flowforge's: the code under test is the shipped code.
"""

import builtins
import errno
import os
import signal
import time

_SPEC = os.environ.get("FLOWFORGE_FAULT")


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(when: str, target: str, n: int) -> None:
    state = {"opened": 0, "chosen": set()}
    real_open, real_fdopen = builtins.open, os.fdopen
    real_fsync, real_replace = os.fsync, os.replace

    def ours(path: str) -> bool:
        name = os.path.basename(path)
        return name == target or (name.startswith(f".{target}.") and name.endswith(".tmp"))

    class Faulty:
        """A file object passing everything through, whose writes fail as ``when`` says."""

        def __init__(self, f, binary):
            self._f, self._binary, self._calls = f, binary, 0

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()
            return False

        def write(self, data):
            self._calls += 1
            # a record or a rewritten text file is one write; torch.save: fail in its second
            # chunk
            if self._calls == (2 if self._binary and target.endswith(".pt") else 1):
                half = data[: len(data) // 2]
                self._f.write(half)
                self._f.flush()
                if when == "enospc":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if when == "mid_write":
                    _kill()
                self._f.write(data[len(half) :])
                self._f.flush()
                _kill()  # before_rename of an append: the whole line is in the file
            return self._f.write(data)

    def chosen(path, mode) -> bool:
        if not (("w" in mode or "a" in mode) and ours(path)):
            return False
        state["opened"] += 1
        return state["opened"] == n

    def wrap(f, path, mode):
        if chosen(path, mode):
            if when == "pause":
                time.sleep(3)
                return f
            if when == "enospc" or target == "metrics.jsonl":
                return Faulty(f, "b" in mode)
            state["chosen"].add(f.fileno())
        return f

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)):
            return wrap(f, os.fspath(file), mode)
        return f

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f
        return wrap(f, path, mode)

    def fsync(fd):
        real_fsync(fd)
        if fd in state["chosen"]:
            state["chosen"].discard(fd)
            if when == "mid_write":
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                _kill()
            state["pending"] = True  # the rename that follows is the chosen one

    def replace(src, dst, *args, **kwargs):
        pending = state.pop("pending", False) and ours(os.fspath(dst))
        if pending and when == "before_rename":
            _kill()
        real_replace(src, dst, *args, **kwargs)
        if pending and when == "after_rename":
            _kill()

    builtins.open, os.fdopen, os.fsync, os.replace = open_, fdopen, fsync, replace


if _SPEC:
    _when, _target, _n = _SPEC.split(":")
    _install(_when, _target, int(_n))
