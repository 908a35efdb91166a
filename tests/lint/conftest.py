"""The analysis server (``session_lint.editors.server``) is off unless a test asks for it:
flake8 runs in these tests must neither start nor meet a server of the user's."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_LINT_SERVER", "off")


@pytest.fixture
def server_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Servers on, in a private directory of their own (short: a socket path has
    a ~100-byte limit); every server started there is stopped afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="sl-"))
    monkeypatch.setenv("SESSION_LINT_SERVER", "on")
    monkeypatch.setenv("SESSION_LINT_SERVER_DIR", str(directory))
    monkeypatch.delenv("CI", raising=False)
    try:
        yield directory
    finally:
        stop_servers(directory)
        shutil.rmtree(directory, ignore_errors=True)


def stop_servers(directory: Path) -> None:
    for sock in directory.glob("*.sock"):
        subprocess.run(
            [sys.executable, "-m", "session_lint.editors.server", "--socket", str(sock), "--stop"],
            capture_output=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    for lock in directory.glob("*.lock"):
        pid = server_pid(lock)
        if pid is None:
            continue
        try:
            # A server the client started leads its own process group (it and its
            # workers); one a test started directly gets SIGTERM, and ends its workers.
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def server_pid(lock: Path) -> int | None:
    """The pid of the server holding this lock, None if none holds it."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        text = lock.read_text().strip()
        return int(text) if text.isdigit() else None
    finally:
        os.close(fd)
    return None
