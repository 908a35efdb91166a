"""Wake up when a file in a watched directory is written: the analysis server's
watcher waits on this instead of polling.

On Linux, inotify (through ctypes: the stdlib has no binding) on the directories,
for files closed after writing and files renamed into place, which is how
editors save. The events only wake the watcher, which then compares its files'
``stat``; their content is never read from here. Elsewhere, or if inotify is
unavailable, :meth:`FileEvents.wait` just sleeps a short poll interval.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import sys
import time

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
POLL = 0.02  # seconds between looks without inotify


class FileEvents:
    def __init__(self) -> None:
        self._fd = -1
        self._libc: ctypes.CDLL | None = None
        self._watched: set[str] = set()
        if sys.platform.startswith("linux"):
            self._open()

    @property
    def native(self) -> bool:
        return self._fd >= 0

    def _open(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self._libc, self._fd = libc, fd

    def watch(self, directory: str) -> None:
        """Be woken by writes in ``directory`` (no-op without inotify)."""
        if self._libc is None or directory in self._watched:
            return
        wd = self._libc.inotify_add_watch(
            self._fd, os.fsencode(directory), _IN_CLOSE_WRITE | _IN_MOVED_TO
        )
        if wd >= 0:  # else (no such directory, too many watches) stat polling finds it
            self._watched.add(directory)

    def wait(self, timeout: float) -> bool:
        """Until something was written in a watched directory (True) or ``timeout``
        passed (False); without inotify, sleeps :data:`POLL` and says True."""
        if self._fd < 0:
            time.sleep(min(POLL, timeout))
            return True
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return False
        try:
            while os.read(self._fd, 65536):
                pass  # drain: which file it was does not matter, stat tells
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
