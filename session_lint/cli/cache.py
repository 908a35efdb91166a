"""A per-file result cache in ``.session_lint_cache/`` beside the config file.

An entry is keyed by everything that can change a file's findings: the file's
bytes, the path it is analysed as (engine modules and per-file-ignores depend on
it), :meth:`Config.fingerprint`, whether ``# noqa`` is applied, and the tool
itself — its version *and* a fingerprint of its installed source files, so an
edited rule never serves an old answer even before the version is bumped.

Entries are written to a temp file and renamed into place, so concurrent runs
only ever see whole entries; a damaged or unreadable entry is a miss. Only runs
without internal errors are stored. Fixing never uses the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from session_lint.finding import Finding
from session_lint.fingerprint import tool_fingerprint
from session_lint.project.config import Config

CACHE_DIR_NAME = ".session_lint_cache"
_FORMAT = 1  # bump when the entry layout changes


class Cache:
    def __init__(self, directory: Path, config: Config, *, apply_noqa: bool = True) -> None:
        self.directory = directory
        salt = f"{tool_fingerprint()}:{_FORMAT}:{config.fingerprint()}:{int(apply_noqa)}"
        # The tool's fingerprint is a few kB of text: hashed once, copied per file.
        self._salted = hashlib.sha256(salt.encode())
        self._config = config
        self._ready = False

    @classmethod
    def for_config(cls, config: Config, *, apply_noqa: bool = True) -> Cache:
        return cls(Path(config.root) / CACHE_DIR_NAME, config, apply_noqa=apply_noqa)

    def key(self, source: bytes, path: str) -> str:
        digest = self._salted.copy()
        digest.update(b"\0" + self._config.relative(path).encode("utf-8", "surrogateescape"))
        digest.update(b"\0" + source)
        return digest.hexdigest()

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str, path: str) -> list[Finding] | None:
        """The stored findings, with ``path`` as their display path, or None."""
        try:
            raw = json.loads(self._entry(key).read_text(encoding="utf-8"))
            return [Finding.from_dict(path, item) for item in raw["findings"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, findings: Sequence[Finding]) -> None:
        """Store best-effort: a cache that cannot be written only costs time."""
        entry = self._entry(key)
        try:
            self._prepare()
            entry.parent.mkdir(exist_ok=True)
            data = json.dumps({"findings": [f.to_dict() for f in findings]})
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(data)
                os.replace(tmp, entry)
            except BaseException:
                _unlink(tmp)
                raise
        except OSError:
            pass

    def _prepare(self) -> None:
        if self._ready:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Keep the cache out of version control and out of backups, as ruff does.
        for name, text in (
            (".gitignore", "# Automatically created by session-lint.\n*\n"),
            (
                "CACHEDIR.TAG",
                "Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by session-lint.\n",
            ),
        ):
            marker = self.directory / name
            if not marker.exists():
                try:
                    marker.write_text(text, encoding="utf-8")
                except OSError:
                    pass
        self._ready = True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
