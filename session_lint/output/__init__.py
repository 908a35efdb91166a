"""Renderers for findings: ``full`` and ``concise`` (also spelled ``text``) for
people, ``json``/``github``/``sarif``/``gitlab``/``junit`` for tools.

Each takes findings already sorted and returns the whole output as one string.
"""

from __future__ import annotations

from collections.abc import Sequence

from session_lint.finding import Applicability, Finding

FORMATS = ("concise", "full", "text", "json", "github", "sarif", "gitlab", "junit")
TEXT_FORMATS = ("concise", "full", "text")  # "text": concise, its name before ``full``


def fixable_now(finding: Finding, *, unsafe_fixes: bool) -> bool:
    """Whether ``--fix`` (with ``--unsafe-fixes`` as given) would fix this finding."""
    applicability = finding.fix_applicability
    return applicability is not None and applicability.allowed(unsafe_fixes=unsafe_fixes)


def count_fixable(findings: Sequence[Finding]) -> tuple[int, int]:
    """(safe, unsafe) fixable counts."""
    safe = sum(1 for f in findings if f.fix_applicability is Applicability.SAFE)
    unsafe = sum(1 for f in findings if f.fix_applicability is Applicability.UNSAFE)
    return safe, unsafe
