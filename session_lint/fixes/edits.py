"""Building fixes: edits of option mappings (dict literals, ``dict(...)`` calls,
keyword arguments) and of statements, from the original nodes.

Edits keep the layout: a removed element's comma style passes to its neighbour,
an added element copies the spacing of the ones around it, and comments on kept
lines stay on those lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import libcst as cst

from session_lint.semantics.mappings import Mapping, keyword

# -- editing ---------------------------------------------------------------------
#
# libcst keeps the whitespace between elements on each element's comma, and the
# whitespace before the closing bracket on the bracket (dicts), on the last
# argument (calls), or on a trailing comma. Edits take a sequence apart into
# elements, separators and one closing whitespace, change it, and put it back.

_E = TypeVar("_E", cst.DictElement, cst.Arg, cst.BaseDictElement)
_WS = cst.BaseParenthesizableWhitespace


@dataclass(frozen=True)
class _Layout:
    elements: tuple[cst.CSTNode, ...]  # without their commas
    separators: tuple[_WS, ...]  # whitespace after each comma between elements
    trailing_comma: bool
    closing: _WS  # whitespace before the closing bracket


def _merge(a: _WS, b: _WS) -> _WS:
    if isinstance(a, cst.ParenthesizedWhitespace):
        return a
    if isinstance(b, cst.ParenthesizedWhitespace):
        return b
    assert isinstance(a, cst.SimpleWhitespace) and isinstance(b, cst.SimpleWhitespace)
    return cst.SimpleWhitespace(a.value + b.value)


def _after_comma(element: cst.CSTNode) -> _WS:
    comma = getattr(element, "comma", cst.MaybeSentinel.DEFAULT)
    return comma.whitespace_after if isinstance(comma, cst.Comma) else cst.SimpleWhitespace("")


def _layout(elements: Sequence[_E], bracket: _WS | None) -> _Layout:
    stripped: list[cst.CSTNode] = []
    for e in elements:
        e = e.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        if isinstance(e, cst.Arg):
            e = e.with_changes(whitespace_after_arg=cst.SimpleWhitespace(""))
        stripped.append(e)
    separators = tuple(_after_comma(e) for e in elements[:-1])
    closing: _WS = cst.SimpleWhitespace("")
    trailing = False
    if elements:
        last = elements[-1]
        trailing = isinstance(last.comma, cst.Comma)
        closing = _after_comma(last)
        if isinstance(last, cst.Arg):
            closing = _merge(last.whitespace_after_arg, closing)
    if bracket is not None:
        closing = _merge(closing, bracket)
    return _Layout(tuple(stripped), separators, trailing, closing)


def _build(layout: _Layout, *, closing_on_bracket: bool) -> tuple[list[cst.CSTNode], _WS]:
    """Elements with commas, and the whitespace left for the closing bracket."""
    out: list[cst.CSTNode] = []
    n = len(layout.elements)
    for i, element in enumerate(layout.elements):
        if i < n - 1:
            out.append(element.with_changes(comma=cst.Comma(whitespace_after=layout.separators[i])))
            continue
        if closing_on_bracket or not isinstance(element, cst.Arg):
            comma = cst.Comma() if layout.trailing_comma else cst.MaybeSentinel.DEFAULT
            out.append(element.with_changes(comma=comma))
            return out, layout.closing
        if layout.trailing_comma:
            out.append(element.with_changes(comma=cst.Comma(whitespace_after=layout.closing)))
        else:
            out.append(element.with_changes(whitespace_after_arg=layout.closing))
        return out, cst.SimpleWhitespace("")
    return out, layout.closing


def _without_comment(ws: _WS) -> _WS:
    if isinstance(ws, cst.ParenthesizedWhitespace):
        return ws.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=())
    return ws


def _removed(layout: _Layout, keep: Sequence[bool]) -> _Layout:
    kept = [i for i, k in enumerate(keep) if k]
    if not kept:
        return _Layout((), (), False, _without_comment(layout.closing))
    separators = tuple(layout.separators[i] for i in kept[:-1])
    closing = layout.closing
    last = kept[-1]
    if last != len(layout.elements) - 1:
        own = layout.separators[last]  # holds the kept line's own comment
        if isinstance(closing, cst.ParenthesizedWhitespace):
            first = own.first_line if isinstance(own, cst.ParenthesizedWhitespace) else None
            closing = closing.with_changes(
                first_line=first or cst.TrailingWhitespace(), empty_lines=()
            )
    return _Layout(
        tuple(layout.elements[i] for i in kept), separators, layout.trailing_comma, closing
    )


def _appended(layout: _Layout, new: cst.CSTNode, opening: _WS) -> _Layout:
    if not layout.elements:
        return _Layout((new,), (), False, layout.closing)
    between: _WS
    if layout.separators:
        between = _without_comment(layout.separators[-1])
    elif isinstance(opening, cst.ParenthesizedWhitespace):
        between = _without_comment(opening)
    else:
        between = cst.SimpleWhitespace(" ")
    closing = layout.closing
    trailing = layout.trailing_comma
    if isinstance(closing, cst.ParenthesizedWhitespace):
        if isinstance(between, cst.ParenthesizedWhitespace):
            # The old last line keeps its comment; the new line gets the break.
            between = between.with_changes(first_line=closing.first_line)
        closing = _without_comment(closing)
    elif trailing:
        # ``f(a, )`` on one line: the comma was the last one's; the new last needs none.
        trailing, closing = False, cst.SimpleWhitespace("")
    return _Layout((*layout.elements, new), (*layout.separators, between), trailing, closing)


def dict_without(node: cst.Dict, drop: Callable[[cst.BaseDictElement], bool]) -> cst.Dict:
    layout = _removed(
        _layout(node.elements, node.rbrace.whitespace_before), [not drop(e) for e in node.elements]
    )
    elements, closing = _build(layout, closing_on_bracket=True)
    return node.with_changes(
        elements=elements, rbrace=node.rbrace.with_changes(whitespace_before=closing)
    )


def dict_with(node: cst.Dict, new: cst.DictElement) -> cst.Dict:
    layout = _appended(
        _layout(node.elements, node.rbrace.whitespace_before), new, node.lbrace.whitespace_after
    )
    elements, closing = _build(layout, closing_on_bracket=True)
    return node.with_changes(
        elements=elements, rbrace=node.rbrace.with_changes(whitespace_before=closing)
    )


def call_without(node: cst.Call, drop: Callable[[cst.Arg], bool]) -> cst.Call:
    layout = _removed(_layout(node.args, None), [not drop(a) for a in node.args])
    args, _ = _build(layout, closing_on_bracket=False)
    return node.with_changes(args=args)


def call_with(node: cst.Call, new: cst.Arg) -> cst.Call:
    """``node`` with ``new`` appended, or inserted before a trailing ``*args``/``**kwargs``
    so the call stays valid."""
    args = list(node.args)
    split = len(args)
    while split and args[split - 1].star:
        split -= 1
    if split == len(args):
        layout = _appended(_layout(args, None), new, node.whitespace_before_args)
        built, _ = _build(layout, closing_on_bracket=False)
        return node.with_changes(args=built)
    # Before the spread: take the spread's place and spacing, the spread moves right.
    spread = args[split]
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    if split:
        before = args[split - 1].comma
        if isinstance(before, cst.Comma):
            comma = cst.Comma(whitespace_after=_without_comment(before.whitespace_after))
    return node.with_changes(
        args=[*args[:split], new.with_changes(comma=comma), spread, *args[split + 1 :]]
    )


def dict_entry(key: str, value: cst.BaseExpression) -> cst.DictElement:
    return cst.DictElement(
        key=cst.SimpleString(repr_str(key)),
        value=value,
        whitespace_after_colon=cst.SimpleWhitespace(" "),
    )


def keyword_arg(name: str, value: cst.BaseExpression) -> cst.Arg:
    return cst.Arg(
        value=value,
        keyword=cst.Name(name),
        equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
        ),
    )


def repr_str(text: str) -> str:
    """A double-quoted Python literal for ``text`` (the style ruff format keeps)."""
    body = repr(text)[1:-1]
    if repr(text).startswith("'"):
        body = body.replace('"', '\\"').replace("\\'", "'")
    return f'"{body}"'


def without_entries(mapping: Mapping, keys: set[str]) -> cst.Dict | cst.Call:
    """The mapping's node with ``keys`` removed."""
    node = mapping.node
    doomed = {id(e.element) for e in mapping.entries if e.key in keys}
    if isinstance(node, cst.Dict):
        return dict_without(node, lambda e: id(e) in doomed)
    return call_without(node, lambda a: id(a) in doomed)


def with_entry(mapping: Mapping, key: str, value: cst.BaseExpression) -> cst.Dict | cst.Call:
    """The mapping's node with ``key`` set to ``value`` (replaced in place, or appended)."""
    node = mapping.node
    existing = mapping.get(key)
    if isinstance(node, cst.Dict):
        if existing is not None:
            return node.with_changes(
                elements=[
                    e.with_changes(value=value) if e is existing.element else e
                    for e in node.elements
                ]
            )
        return dict_with(node, dict_entry(key, value))
    return with_keyword(node, key, value)


def with_keyword(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
    """``call`` with keyword ``name=value`` set (replaced in place, or added)."""
    existing = keyword(call, name)
    if existing is not None:
        return call.with_changes(
            args=[a.with_changes(value=value) if a is existing else a for a in call.args]
        )
    return call_with(call, keyword_arg(name, value))


def without_keyword(call: cst.Call, *names: str) -> cst.Call:
    return call_without(call, lambda a: a.keyword is not None and a.keyword.value in names)


# -- statements ------------------------------------------------------------------

Edit = tuple[cst.CSTNode, "cst.CSTNode | cst.RemovalSentinel"]


def delete_statement(line: cst.SimpleStatementLine, block: cst.CSTNode) -> tuple[Edit, ...] | None:
    """Edits that delete ``line`` from ``block`` and keep the block valid: a sole
    statement becomes ``pass``; comment lines above it move to the next statement."""
    body = block.body if isinstance(block, (cst.IndentedBlock, cst.Module)) else ()
    index = next((i for i, s in enumerate(body) if s is line), None)
    if index is None:
        return None
    if len(body) == 1 and isinstance(block, cst.IndentedBlock):
        return ((line, line.with_changes(body=[cst.Pass()])),)
    if index + 1 < len(body):
        following = body[index + 1]
        if line.leading_lines and isinstance(
            following, cst.SimpleStatementLine | cst.BaseCompoundStatement
        ):
            moved = following.with_changes(
                leading_lines=[*line.leading_lines, *following.leading_lines]
            )
            return ((line, cst.RemovalSentinel.REMOVE), (following, moved))
        return ((line, cst.RemovalSentinel.REMOVE),)
    if any(empty.comment is not None for empty in line.leading_lines):
        return None  # last in its block with a comment above: nowhere to keep it
    return ((line, cst.RemovalSentinel.REMOVE),)
