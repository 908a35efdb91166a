"""``--format full``: each finding with its source line, a caret line under the
span, and the fix's title (ruff's ``full`` layout); colour for a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from session_lint.finding import Applicability, Finding
from session_lint.output import fixable_now
from session_lint.output.source import Sources

BOLD, RED, CYAN, BLUE, RESET = "\x1b[1m", "\x1b[31m", "\x1b[36m", "\x1b[34m", "\x1b[0m"


class Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, *codes: str) -> str:
        return f"{''.join(codes)}{text}{RESET}" if self.colour and text else text


def header(finding: Finding, style: Style, *, unsafe_fixes: bool) -> str:
    """``path:line:col: CODE [*] message``: the concise line, ``[*]`` when ``--fix``
    (with ``--unsafe-fixes`` as given) would fix it."""
    mark = "[*] " if fixable_now(finding, unsafe_fixes=unsafe_fixes) else ""
    where = f"{style(finding.path, BOLD)}:{finding.line}:{finding.column}:"
    return f"{where} {style(finding.code, BOLD, RED)} {mark}{finding.message}"


def fix_title(finding: Finding) -> str | None:
    """``Safe fix: <what it does>`` / ``Unsafe fix: ...``, or None without a fix."""
    if finding.fix is None:
        return None
    level = "Safe" if finding.fix.applicability is Applicability.SAFE else "Unsafe"
    description = finding.fix.description
    return f"{level} fix: {description}" if description else f"{level} fix available"


def snippet(finding: Finding, text: str, style: Style) -> list[str]:
    number = str(finding.line)
    gutter = " " * len(number)
    start = max(finding.column - 1, 0)
    # The span's first line only; a multi-line span is marked to the line's end.
    end = finding.end_column - 1 if finding.end_line == finding.line else len(text)
    end = max(end, start + 1)
    # Tabs stay tabs, so that the carets line up with the code however wide they show.
    pad = "".join("\t" if c == "\t" else " " for c in text[:start])
    carets = "^" * max(1, min(end, max(len(text), start + 1)) - start)
    bar = style("|", BLUE, BOLD)
    return [
        f"{gutter} {bar}",
        f"{style(number, BLUE, BOLD)} {bar} {text}",
        f"{gutter} {bar} {pad}{style(carets + ' ' + finding.code, RED, BOLD)}",
        f"{gutter} {bar}",
    ]


def render_finding(
    finding: Finding, sources: Sources, style: Style, *, unsafe_fixes: bool
) -> list[str]:
    lines = [header(finding, style, unsafe_fixes=unsafe_fixes)]
    text = sources.line(finding.path, finding.line)
    if text is not None:
        lines += snippet(finding, text, style)
    title = fix_title(finding)
    if title is not None:
        gutter = " " * len(str(finding.line))
        lines.append(f"{gutter} = {style(title, CYAN)}")
    return lines


def render_lines(
    findings: Sequence[Finding], sources: Sources, *, colour: bool, unsafe_fixes: bool
) -> list[str]:
    """The findings, a blank line after each (the summary follows the last)."""
    style = Style(colour)
    out: list[str] = []
    for finding in findings:
        out += render_finding(finding, sources, style, unsafe_fixes=unsafe_fixes)
        out.append("")
    return out
