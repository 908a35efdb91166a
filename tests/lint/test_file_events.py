"""The server's watcher is woken by editors' saves: a write, or a rename into place."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from session_lint.editors.file_events import POLL, FileEvents


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_writes_and_renames_wake_the_watcher(tmp_path: Path) -> None:
    events = FileEvents()
    assert events.native, "inotify is available on Linux"
    try:
        events.watch(str(tmp_path))
        assert events.wait(0.2) is False, "nothing happened yet"
        (tmp_path / "app.py").write_text("x = 1\n")  # an editor writing in place
        assert events.wait(5) is True
        assert events.wait(0.2) is False, "the event was consumed"
        (tmp_path / ".app.py.swp").write_text("x = 2\n")
        assert events.wait(5) is True
        os.replace(tmp_path / ".app.py.swp", tmp_path / "app.py")  # write, then rename
        assert events.wait(5) is True
        assert events.wait(0.2) is False
        events.watch(str(tmp_path / "missing"))  # no such directory: no error
    finally:
        events.close()


def test_without_inotify_it_polls() -> None:
    events = FileEvents()
    events.close()
    start = time.monotonic()
    assert events.wait(10) is True
    assert time.monotonic() - start < POLL * 50
