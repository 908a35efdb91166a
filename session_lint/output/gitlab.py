"""GitLab Code Quality: a JSON array of issues (``description``, ``check_name``,
``fingerprint``, ``severity``, ``location.path``, ``location.lines.begin``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from session_lint.finding import Finding
from session_lint.output.source import Sources, fingerprints


def project_path(path: str) -> str:
    """GitLab matches ``location.path`` against the repository's files: relative,
    with ``/``, without ``./``; an absolute path under the working directory (the
    job's checkout) is made relative to it."""
    if os.path.isabs(path):
        relative = os.path.relpath(path)
        if not relative.startswith(os.pardir):
            path = relative
    return os.path.normpath(path).replace(os.sep, "/")


def issue(finding: Finding, fingerprint: str) -> dict[str, Any]:
    return {
        "description": f"{finding.code} {finding.message}",
        "check_name": finding.code,
        "fingerprint": fingerprint,
        "severity": "major",
        "location": {
            "path": project_path(finding.path),
            "lines": {"begin": finding.line, "end": finding.end_line},
        },
    }


def render(findings: Sequence[Finding], sources: Sources) -> str:
    """The array; the run's errors are on stderr and in the exit code (2): the
    format has no place for a problem that is not at a line of a file."""
    rows = [issue(f, p) for f, p in zip(findings, fingerprints(findings, sources), strict=True)]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
