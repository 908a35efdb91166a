"""``# noqa`` comments: reading them as flake8 does, and writing them.

One grammar for every entry point. The flake8 plugin's findings are filtered by
flake8 itself, so the CLI and the language server read a comment exactly as
flake8 does (ruff follows the same grammar):

- ``# noqa`` (one space, any case) silences every code on the line;
- ``# noqa: SL101,SL2`` (or ``# noqa:SL101 SL2``) the listed codes and the codes
  they are a prefix of; codes are compared as written, so ``# noqa: sl101`` names
  no SL code;
- a ``# noqa:`` whose list is not a code list (``# noqa: FOO``) is a bare
  ``# noqa``; ``#noqa`` and ``# noqa : SL101`` are not noqa comments at all.

A finding's line is the physical line the tokenizer counts (``\\n``, ``\\r\\n``,
``\\r``): a form feed or a U+2028 inside a string does not start a new line.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Mapping, Sequence

from session_lint.finding import Finding

# flake8's ``defaults.NOQA_INLINE_REGEXP``.
NOQA = re.compile(r"# noqa(?::[\s]?(?P<codes>([A-Z]+[0-9]+(?:[,\s]+)?)+))?", re.IGNORECASE)
_SEPARATORS = re.compile(r"[,\s]")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Spelled in two parts so that no linter takes this line for a directive.
DIRECTIVE = "#" + " noqa: "


class NoqaLines:
    """Where flake8 looks for a line's ``# noqa``: the physical lines from one
    NEWLINE or NL token to the next, joined, so that a comment after a multi-line
    string or a backslash continuation covers every line of it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in LINE_BREAK.finditer(text)]
        self.ranges: dict[int, tuple[int, int]] = {}
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (tokenize.TokenError, SyntaxError):
            return  # every line is its own range
        first, last = len(self.starts) + 2, -1
        for token in tokens:
            if token.type in (tokenize.ENDMARKER, tokenize.DEDENT):
                continue
            first, last = min(first, token.start[0]), max(last, token.end[0])
            if token.type in (tokenize.NL, tokenize.NEWLINE):
                for line in range(first, last + 1):
                    self.ranges[line] = (first, last)
                first, last = len(self.starts) + 2, -1

    def range(self, line: int) -> tuple[int, int]:
        return self.ranges.get(line, (line, line))

    def physical(self, line: int) -> str:
        """The line's text, without its line break."""
        start = self.starts[line - 1]
        end = self.starts[line] if line < len(self.starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def searched(self, line: int) -> str:
        """The text searched for the ``# noqa`` of ``line``."""
        if not 0 < line <= len(self.starts):
            return ""
        first, last = self.range(line)
        start = self.starts[first - 1]
        end = self.starts[last] if last < len(self.starts) else len(self.text)
        return self.text[start:end]


def listed_codes(line: str) -> tuple[str, ...] | None:
    """The codes a line's ``# noqa`` names: ``()`` for a bare one, None when the
    line has none."""
    match = NOQA.search(line)
    if match is None:
        return None
    codes = match.group("codes")
    if codes is None:
        return ()
    return tuple(part for part in _SEPARATORS.split(codes) if part)


def suppresses(line: str, code: str) -> bool:
    codes = listed_codes(line)
    if codes is None:
        return False
    return not codes or code.startswith(codes)


def filter_noqa(findings: list[Finding], source: bytes) -> list[Finding]:
    """The findings that no ``# noqa`` on their line silences."""
    if not findings or b"noqa" not in source.lower():
        return findings
    lines = NoqaLines(source.decode("utf-8", "replace"))
    return [f for f in findings if not suppresses(lines.searched(f.line), f.code)]


def with_codes(text: str, line: int, codes: Sequence[str]) -> str | None:
    """``text`` with ``codes`` in the ``# noqa`` that covers ``line`` (a new
    comment at the end of its statement's last physical line when there is none,
    the codes merged into an existing list); ``text`` itself when they are
    already silenced; None when the line is not there."""
    new, _, skipped = _with_codes(text, {line: codes})
    return None if skipped else new


def add_noqa(text: str, findings: Iterable[Finding]) -> tuple[str, int, list[int]]:
    """``text`` with every finding's code in the ``# noqa`` that covers its line:
    the new text, the number of comments added or extended, and the lines that
    could not take one."""
    wanted: dict[int, list[str]] = {}
    for finding in findings:
        codes = wanted.setdefault(finding.line, [])
        if finding.code not in codes:
            codes.append(finding.code)
    return _with_codes(text, wanted)


def _with_codes(text: str, wanted: Mapping[int, Sequence[str]]) -> tuple[str, int, list[int]]:
    lines = NoqaLines(text)
    # The comment goes where flake8 reads it for every line of the range: after
    # the range's last physical line, the only one a comment can end.
    by_end: dict[int, list[str]] = {}
    skipped: list[int] = []
    for line, codes in wanted.items():
        if not 0 < line <= len(lines.starts):
            skipped.append(line)
            continue
        missing = [c for c in codes if not suppresses(lines.searched(line), c)]
        end_codes = by_end.setdefault(lines.range(line)[1], [])
        end_codes += [c for c in missing if c not in end_codes]
    parts: list[str] = []
    done = 0
    changed = 0
    for line in sorted(by_end):
        codes = by_end[line]
        if not codes:
            continue
        body = lines.physical(line)
        if body.endswith("\\") and NOQA.search(body) is None:
            skipped.append(line)  # the tokenizer failed: a comment here would break it
            continue
        start = lines.starts[line - 1]
        parts += [text[done:start], _line_with_codes(body, codes)]
        done = start + len(body)
        changed += 1
    parts.append(text[done:])
    return "".join(parts), changed, sorted(skipped)


def _line_with_codes(line: str, codes: Sequence[str]) -> str:
    match = NOQA.search(line)
    if match is None or match.group("codes") is None:
        # None, or a bare one in the range's other lines: a comment of its own.
        return f"{line}  {DIRECTIVE}{', '.join(codes)}"
    end = match.end("codes")
    head = line[:end].rstrip(", \t")
    rest = line[end:]
    # The regex takes the separators after the last code: they stay before the rest.
    between = line[len(head) : end] if rest else ""
    return f"{head}, {', '.join(codes)}{between}{rest}"
