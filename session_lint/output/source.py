"""The source lines a report shows or hashes: read once per file, at report time.

Under ``--fix`` the files on disk are the fixed ones, which is what the remaining
findings point into; standard input is given as text (``known``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tokenize
from collections import Counter
from collections.abc import Mapping, Sequence

from session_lint.finding import Finding


class Sources:
    def __init__(self, known: Mapping[str, bytes] | None = None) -> None:
        self._known = dict(known or {})
        self._lines: dict[str, list[str]] = {}

    def lines(self, path: str) -> list[str]:
        """The file's lines without line ends; empty when it cannot be read."""
        if path not in self._lines:
            data = self._known.get(path)
            if data is None:
                try:
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    data = b""
            self._lines[path] = decode(data).splitlines()
        return self._lines[path]

    def line(self, path: str, number: int) -> str | None:
        lines = self.lines(path)
        return lines[number - 1] if 0 < number <= len(lines) else None


def decode(data: bytes) -> str:
    """Bytes as Python reads them (PEP 263 coding cookie, BOM), errors replaced."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


_SPACE = re.compile(r"\s+")


def fingerprints(findings: Sequence[Finding], sources: Sources) -> list[str]:
    """A stable id per finding, in order: a hash of the path, the code, the line's
    text with its whitespace normalised, and the occurrence of that triple in the
    file. Not the line number: an edit above a finding keeps its id, so a CI
    dashboard does not report it as fixed and new again."""
    seen: Counter[tuple[str, str, str]] = Counter()
    out = []
    for finding in findings:
        text = _SPACE.sub(" ", sources.line(finding.path, finding.line) or "").strip()
        path = os.path.normpath(finding.path).replace(os.sep, "/")  # ./a.py is a.py
        key = (path, finding.code, text)
        occurrence = seen[key]
        seen[key] += 1
        payload = "\0".join((*key, str(occurrence)))
        out.append(hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    return out
