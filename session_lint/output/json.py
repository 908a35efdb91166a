"""One JSON array of findings; paths exactly as given on the command line."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from session_lint.finding import Finding
from session_lint.output import fixable_now


def as_dict(finding: Finding) -> dict[str, Any]:
    """The public JSON shape (README): the path first, the fix as an object."""
    data = finding.to_dict()
    applicability = data.pop("fix")
    del data["fix_description"]
    fix = None if applicability is None else {"applicability": applicability}
    return {"path": finding.path, **data, "fix": fix}


def render(findings: Sequence[Finding], errors: Sequence[str] = ()) -> str:
    """An array of findings; on a run with errors (exit code 2), an object
    ``{"findings": [...], "errors": [{"message": ...}]}``, so that a consumer
    cannot take a run that linted nothing for a clean one."""
    rows = [as_dict(f) for f in findings]
    if not errors:
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    data = {"findings": rows, "errors": [{"message": message} for message in errors]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_statistics(findings: Sequence[Finding], *, unsafe_fixes: bool = False) -> str:
    """``--statistics --format json``: per-code counts."""
    counts = Counter(f.code for f in findings)
    names = {f.code: f.name for f in findings}
    fixable = Counter(f.code for f in findings if fixable_now(f, unsafe_fixes=unsafe_fixes))
    rows = [
        {"code": code, "name": names[code], "count": counts[code], "fixable": fixable[code]}
        for code in sorted(counts)
    ]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
