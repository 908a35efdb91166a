from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Collection, Sequence

import libcst as cst

from session_lint.core.noqa import DIRECTIVE, NOQA, NoqaLines, listed_codes
from session_lint.finding import Applicability, Finding, Fix, FixAvailability
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule

_SL_CODE = re.compile(r"SL[0-9]+")
# What reads as meant for session-lint: SL and a digit, in any case (``sl101``,
# ``SL1O1`` are typos of ours; ``SLF001`` is flake8-self's).
_OURS = re.compile(r"SL[0-9]", re.IGNORECASE)
# A noqa comment that may list one of our codes (or a code spelled like one):
# every comment SL001 can report matches, so a file without one is never tokenized.
_MAY_NAME_OURS = re.compile(rb"noqa[^\r\n]*sl[0-9]", re.IGNORECASE)


class UnusedNoqa(Rule):
    """
    ## What it does
    Reports a `# noqa` comment that names a session-lint code (`SL…`) which
    suppresses nothing on its line, or which is not a session-lint code at all
    (`SL999`, `SL1O1` with a letter O, `sl101` in lower case, which flake8 does not
    read as `SL101`).

    A code is only called unused when its rule ran on the file: a code of a rule
    that is not selected, is ignored for the file (`per-file-ignores`) or does not
    run in the file's role is left alone, since another configuration may need it.
    Codes of other tools (`E501`, `B008`, and `SLF001` or `SLOT000`, whose letters
    after `SL` make them flake8-self's and flake8-slots') and a bare `# noqa` are
    never reported.

    ## Why is this bad?
    A dead `# noqa` hides the next real finding on that line: once the code
    changes, a new problem of the same kind there is silenced without anyone
    having looked at it. A code that names no rule silences nothing and reads as if
    it did. After `session-lint --add-noqa`, this rule tells which comments can go
    as the findings are fixed.

    ## Example
    A typo (the letter O for a zero) that silences nothing, and, when SL101 runs,
    a code left behind after its finding was fixed:
    ```python
    from app.db import get_session


    async def rename(user_id: int, name: str) -> None:
        async with get_session() as session:  # noqa: SL1O1
            ...
        async with get_session() as other:  # noqa: SL101
            ...
    ```

    Use instead:
    ```python
    from app.db import get_session


    async def rename(user_id: int, name: str) -> None:
        async with get_session() as session:
            ...
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): a dead comment is dead
    wherever it is. It reads the comments as flake8 does (`session_lint/core/noqa.py`).

    ## Fix safety
    The fix is safe: it removes the dead codes from the comment, and the whole
    `# noqa: …` directive when no code is left (other text in the comment stays).
    No finding is unsilenced, since the codes removed silence nothing. There is no
    fix for a comment on a line of its own.
    """

    code = "SL001"
    name = "unused-noqa"
    message = "`# noqa` names a session-lint code that silences nothing here"
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    needs_evidence = False
    # Not a walker: the analyzer runs it on the comments after the other rules.
    tokens = ("noqa",)


def unused_noqa(
    findings: Sequence[Finding],
    source: bytes,
    path: str,
    ran: Collection[str],
    known: Collection[str],
    module: cst.Module | None,
) -> list[Finding]:
    """SL001's findings: ``findings`` are the file's findings before any noqa is
    applied, ``ran`` the codes of the rules that ran on it, ``known`` every
    registered code."""
    if _MAY_NAME_OURS.search(source) is None:
        return []  # tokenizing is most of SL001's cost: only where it can find one
    text = source.decode("utf-8", "replace")
    lines = NoqaLines(text)
    by_range: dict[tuple[int, int], set[str]] = {}
    for finding in findings:
        by_range.setdefault(lines.range(finding.line), set()).add(finding.code)
    comments = None  # the libcst comment of each line, built once if needed
    out: list[Finding] = []
    for line, column, comment in _noqa_comments(text):
        codes = listed_codes(comment)
        if not codes:
            continue
        found = by_range.get(lines.range(line), set())
        dead = [c for c in codes if _dead(c, found, ran, known)]
        if not dead:
            continue
        unknown = [c for c in dead if not _is_code(c, known)]
        unused = [c for c in dead if c not in unknown]
        parts = []
        if unused:
            parts.append(f"{_join(unused)} silence{'s' if len(unused) == 1 else ''} nothing here")
        if unknown:
            parts.append(
                f"{_join(unknown)} {'is not a' if len(unknown) == 1 else 'are not'} "
                f"session-lint code{'' if len(unknown) == 1 else 's'}"
            )
        fix = None
        if module is not None:
            if comments is None:
                comments = _trailing_comments(module, text)
            trailing = comments.get(line)
            if trailing is not None:
                fix = _fix(trailing, dead)
        start = column + 1
        out.append(
            Finding(
                path,
                line,
                start,
                line,
                start + len(comment),
                UnusedNoqa.code,
                UnusedNoqa.name,
                "unused `# noqa`: " + "; ".join(parts),
                fix,
            )
        )
    return out


def _dead(code: str, found: set[str], ran: Collection[str], known: Collection[str]) -> bool:
    if _OURS.match(code) is None:
        return False  # another tool's code: SLF001 (flake8-self), SLOT000, E501
    if not _is_code(code, known):
        return True
    if not any(r.startswith(code) for r in ran):
        return False  # its rule did not run here: another configuration may need it
    return not any(f.startswith(code) for f in found)


def _is_code(code: str, known: Collection[str]) -> bool:
    """A code or prefix of a registered rule, spelled as flake8 compares it."""
    return _SL_CODE.fullmatch(code) is not None and any(k.startswith(code) for k in known)


def _join(codes: Sequence[str]) -> str:
    return ", ".join(f"`{c}`" for c in codes)


def _noqa_comments(text: str) -> list[tuple[int, int, str]]:
    """(line, 0-based column, text) of each comment holding a ``# noqa``."""
    out = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT and NOQA.search(token.string):
                out.append((token.start[0], token.start[1], token.string))
    except (tokenize.TokenError, SyntaxError):
        return []
    return out


def _trailing_comments(module: cst.Module, text: str) -> dict[int, cst.TrailingWhitespace]:
    """The end-of-line comment of each line, as the node that holds it: libcst's
    comments in tree order matched to the tokenizer's in source order (no fix at
    all when the two do not line up)."""
    collector = _Comments()
    module.visit(collector)
    try:
        tokens = [
            (t.start[0], t.string)
            for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.COMMENT
        ]
    except (tokenize.TokenError, SyntaxError):
        return {}
    if [node.value for node, _ in collector.found] != [string for _, string in tokens]:
        return {}
    return {
        line: holder
        for (line, _), (_, holder) in zip(tokens, collector.found, strict=True)
        if holder is not None
    }


class _Comments(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[cst.Comment, cst.TrailingWhitespace | None]] = []
        self._trailing: list[cst.TrailingWhitespace] = []

    def visit_TrailingWhitespace(self, node: cst.TrailingWhitespace) -> None:
        self._trailing.append(node)

    def leave_TrailingWhitespace(self, original_node: cst.TrailingWhitespace) -> None:
        self._trailing.pop()

    def visit_Comment(self, node: cst.Comment) -> None:
        holder = self._trailing[-1] if self._trailing else None
        self.found.append((node, holder if holder is not None and holder.comment is node else None))


def _fix(holder: cst.TrailingWhitespace, dead: Sequence[str]) -> Fix | None:
    comment = holder.comment
    assert comment is not None
    value = comment.value
    match = NOQA.search(value)
    if match is None or match.group("codes") is None:
        return None
    kept = [c for c in listed_codes(value) or () if c not in dead]
    start, end = match.start(), match.end("codes")
    rest = value[end:]
    if kept:
        between = value[len(value[:end].rstrip(", \t")) : end] if rest else ""
        new_value = f"{value[:start]}{DIRECTIVE}{', '.join(kept)}{between}{rest}"
    else:
        new_value = (value[:start] + rest.lstrip()).rstrip()
        if new_value and not new_value.startswith("#"):
            new_value = "# " + new_value
    if new_value in ("", "#"):
        new = holder.with_changes(whitespace=cst.SimpleWhitespace(""), comment=None)
    else:
        new = holder.with_changes(comment=cst.Comment(new_value))
    return Fix.replace(
        holder,
        new,
        Applicability.SAFE,
        description=f"remove {_join(dead)} from the `# noqa`",
    )
