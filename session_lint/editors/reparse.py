"""Parse an edited buffer again by re-parsing only the top-level statements the
edit touched, keeping the other statements' nodes from the last parse.

An editor sends the whole buffer on every keystroke, and libcst's parse is about
40 % of analysing a 500-line file (docs/language-server.md, "Speed"). An edit
touches one or two top-level statements. The text before and after it is the same,
so the statements there parse to the same nodes: only the statements the change
overlaps, with one neighbour on each side, are parsed again, as a module of their
own, and spliced between the kept ones.

The splice is taken only when it is sure to equal a full parse; otherwise the
whole buffer is parsed:

- the change lies between the first and the last statement's text (the header and
  the encoding cookie, or the very start, are parsed in full; a change that reaches
  the end takes the fragment's footer);
- the fragment parses, alone, with the module's newline and indentation;
- the fragment gives no footer of its own before kept statements (a trailing
  indented comment may belong to a block or to the module, depending on what
  follows it).

``tests/lint/test_reparse.py`` compares the splice with a full parse
(``deep_equals``) on every edit of the rule fixtures it tries.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from session_lint.core import guard
from session_lint.core.parsing import parse_module


@dataclass(frozen=True)
class Parsed:
    """A buffer's text, its module, and where each top-level statement's code lies
    in the text (``[start, end)``, its leading lines included)."""

    text: str
    module: cst.Module
    spans: tuple[tuple[int, int], ...]


def parsed(text: str, module: cst.Module) -> Parsed | None:
    """The spans of ``module``'s statements in ``text``, or None when its code does
    not lay them out one after the other (it always should: libcst writes back
    exactly what it read)."""
    offset = sum(len(module.code_for_node(line)) for line in module.header)
    spans: list[tuple[int, int]] = []
    for statement in module.body:
        code = module.code_for_node(statement)
        if not text.startswith(code, offset):
            return None
        spans.append((offset, offset + len(code)))
        offset += len(code)
    return Parsed(text, module, tuple(spans))


def reparse(previous: Parsed, text: str) -> Parsed | None:
    """``text`` parsed by splicing into ``previous``, or None when only a full parse
    is sure to be right (or the edited statements do not parse)."""
    old, module, spans = previous.text, previous.module, previous.spans
    if module.encoding != "utf-8" or len(spans) < 3:
        return None
    prefix = _common_prefix(old, text)
    suffix = _common_suffix(old, text, limit=min(len(old), len(text)) - prefix)
    changed_end = len(old) - suffix  # the change is old[prefix:changed_end]
    first_start = spans[0][0]
    if prefix < first_start:
        return None  # the header, or the first statement's own start
    # The statements the change overlaps (a change at a boundary overlaps both),
    # widened by a neighbour on each side.
    first = next(i for i, (_, end) in enumerate(spans) if end >= prefix or i == len(spans) - 1)
    last = next(
        (i for i in range(len(spans) - 1, -1, -1) if spans[i][0] <= changed_end), first
    )
    first, last = max(first - 1, 0), min(max(last, first) + 1, len(spans) - 1)
    if first == 0:
        return None  # the module's start: its header is parsed with it
    delta = len(text) - len(old)
    to_end = last == len(spans) - 1
    start = spans[first][0]
    end = len(text) if to_end else spans[last][1] + delta
    if end < start or (not to_end and spans[last][1] < changed_end):
        return None
    fragment_text = text[start:end]
    fragment = _parse(fragment_text)
    if (
        fragment is None
        or not fragment.body
        or fragment.default_indent != module.default_indent
        or fragment.default_newline != module.default_newline
        or (fragment.footer and not to_end)
    ):
        return None
    body = list(fragment.body)
    if fragment.header:
        # At the top of the fragment these lines are its header; in the buffer they
        # lead its first statement.
        body[0] = body[0].with_changes(leading_lines=[*fragment.header, *body[0].leading_lines])
    changes: dict[str, object] = {"body": [*module.body[:first], *body, *module.body[last + 1 :]]}
    if to_end:
        changes["footer"] = fragment.footer
        changes["has_trailing_newline"] = fragment.has_trailing_newline
    spliced = module.with_changes(**changes)
    inner = parsed(fragment_text, fragment)
    if inner is None:
        return None
    # The fragment's header now leads its first statement: that statement's span
    # starts where the fragment does.
    fragment_spans = [(a + start, b + start) for a, b in inner.spans]
    fragment_spans[0] = (start, fragment_spans[0][1])
    kept_after = [(a + delta, b + delta) for a, b in spans[last + 1 :]]
    return Parsed(text, spliced, (*spans[:first], *fragment_spans, *kept_after))


def _parse(text: str) -> cst.Module | None:
    source = text.encode("utf-8", "surrogatepass")
    if guard.check(source) is not None:
        return None
    try:
        return parse_module(source)
    except Exception:  # a syntax error, or anything libcst refuses: parse it all
        return None


def _common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix, by halving (string comparisons
    run in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str, *, limit: int) -> int:
    low, high = 0, max(limit, 0)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle : len(a) - low] == b[len(b) - middle : len(b) - low]:
            low = middle
        else:
            high = middle - 1
    return low
