"""GitHub Actions workflow commands: one ``::error`` annotation per finding.

Escaping follows the Actions toolkit: in the message ``%``, CR and LF are
percent-encoded; in property values also ``:`` and ``,``.
"""

from __future__ import annotations

from collections.abc import Sequence

from session_lint.finding import Finding


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def render_line(finding: Finding) -> str:
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in (
            ("file", finding.path),
            ("line", finding.line),
            ("col", finding.column),
            ("endLine", finding.end_line),
            ("endColumn", finding.end_column),
            ("title", finding.code),
        )
    )
    return f"::error {props}::{escape_data(finding.message)}"


def render(findings: Sequence[Finding], errors: Sequence[str] = ()) -> str:
    """One annotation per finding, and one (without a file) per error of the run."""
    lines = [f"::error title=session-lint::{escape_data(message)}" for message in errors]
    return "".join(line + "\n" for line in (*lines, *(render_line(f) for f in findings)))
