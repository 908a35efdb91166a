"""Which build of the tool is this: the cache and the analysis server key on it.

Stdlib only and cheap (one ``stat`` per module, no reads, no hashing: even
hashlib's import costs more): the flake8 plugin asks it on every run before
deciding which server may answer.
"""

from __future__ import annotations

import os
from functools import cache

from session_lint import __version__

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@cache
def tool_fingerprint() -> str:
    """The version plus (name, size, mtime) of every module of the installed tool,
    so an edited rule never meets an answer computed by the old one. A few kB of
    text; users hash it as they need."""
    entries: list[str] = []
    for directory, dirnames, filenames in os.walk(_PACKAGE):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            rel = os.path.relpath(path, _PACKAGE).replace(os.sep, "/")
            entries.append(f"{rel}:{info.st_size}:{info.st_mtime_ns}\n")
    return __version__ + "\n" + "".join(sorted(entries))
