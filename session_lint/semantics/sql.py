"""SQL handed to SQLAlchemy as strings: which calls take SQL text, what a literal
string says, and how a string was built.

Only string *literals* (and names bound once to one) are read: the analysis
never guesses what a runtime value holds.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, Scope
from session_lint.known import TEXT_FUNCTIONS
from session_lint.semantics.sessions import is_connection, is_session


def literal_string(expr: cst.BaseExpression) -> str | None:
    """The value of a plain (non-f, non-bytes) string literal or implicit concatenation."""
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    if isinstance(expr, cst.ConcatenatedString):
        left, right = literal_string(expr.left), literal_string(expr.right)
        return None if left is None or right is None else left + right
    return None


def _single_assignment(scope: Scope, name: str) -> cst.BaseExpression | None:
    bindings = scope.lookup(name)
    if len(bindings) == 1 and bindings[0].kind is BindingKind.ASSIGNMENT:
        return bindings[0].value
    return None


def string_argument(
    ctx: FileContext, expr: cst.BaseExpression
) -> tuple[str, cst.BaseExpression] | None:
    """A literal string, or a name bound exactly once to one: (value, literal node)."""
    value = literal_string(expr)
    if value is not None:
        return value, expr
    if isinstance(expr, cst.Name):
        bound = _single_assignment(ctx.scope, expr.value)
        if bound is not None:
            value = literal_string(bound)
            if value is not None:
                return value, bound
    return None


class Interpolation(enum.Enum):
    FSTRING = "an f-string"
    PERCENT = "`%` formatting"
    FORMAT = "`.format()`"
    CONCAT = "`+` concatenation"


@dataclass(frozen=True)
class Built:
    """A string built at runtime from pieces: how, and the expressions put in."""

    how: Interpolation
    values: tuple[cst.BaseExpression, ...]
    # The literal template (`%`, `.format()`), or the whole expression (f-string, `+`).
    template: cst.BaseExpression


def _is_string_like(expr: cst.BaseExpression) -> bool:
    return literal_string(expr) is not None or isinstance(expr, cst.FormattedString)


def concat_parts(expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
        return [*concat_parts(expr.left), *concat_parts(expr.right)]
    return [expr]


def built_string(expr: cst.BaseExpression) -> Built | None:
    """How ``expr`` builds a string from runtime values, or None when it does not."""
    if isinstance(expr, cst.FormattedString):
        values = tuple(
            part.expression
            for part in expr.parts
            if isinstance(part, cst.FormattedStringExpression)
        )
        return Built(Interpolation.FSTRING, values, expr) if values else None
    if isinstance(expr, cst.ConcatenatedString):
        # "SELECT ..." f"WHERE id = {x}" — interpolated when either half is.
        for half in (expr.left, expr.right):
            if isinstance(half, (cst.FormattedString, cst.ConcatenatedString)):
                inner = built_string(half)
                if inner is not None:
                    return Built(inner.how, inner.values, expr)
        return None
    if isinstance(expr, cst.BinaryOperation):
        if isinstance(expr.operator, cst.Modulo) and literal_string(expr.left) is not None:
            right = expr.right
            if isinstance(right, cst.Tuple):
                values = tuple(e.value for e in right.elements)
            elif isinstance(right, cst.Dict):
                values = tuple(e.value for e in right.elements if isinstance(e, cst.DictElement))
            else:
                values = (right,)
            return Built(Interpolation.PERCENT, values, expr.left)
        if isinstance(expr.operator, cst.Add):
            parts = concat_parts(expr)
            if any(_is_string_like(p) for p in parts):
                pieces: list[cst.BaseExpression] = []
                for p in parts:
                    if isinstance(p, cst.FormattedString):
                        inner = built_string(p)
                        pieces.extend(inner.values if inner else ())
                    elif literal_string(p) is None:
                        pieces.append(p)
                if pieces:
                    return Built(Interpolation.CONCAT, tuple(pieces), expr)
        return None
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value == "format"
        and literal_string(expr.func.value) is not None
        and expr.args
    ):
        return Built(Interpolation.FORMAT, tuple(a.value for a in expr.args), expr.func.value)
    return None


_CONSTANT = re.compile(r"^_*[A-Z][A-Z0-9_]*$")


def is_constant_like(expr: cst.BaseExpression) -> bool:
    """Values that are fixed when the code is written — literals, ``UPPER_CASE``
    names, ``Model.__tablename__`` — which a bind parameter could not replace anyway
    (identifiers, not values)."""
    if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString)):
        return True
    if isinstance(expr, cst.Name):
        return bool(_CONSTANT.match(expr.value))
    if isinstance(expr, cst.Call):
        # quote_identifier(...), quoted_name(...), dialect quoting helpers
        name = expr.func.attr.value if isinstance(expr.func, cst.Attribute) else None
        if isinstance(expr.func, cst.Name):
            name = expr.func.value
        return name is not None and "quote" in name.lower()
    if isinstance(expr, cst.Attribute):
        if expr.attr.value in ("__tablename__", "name", "fullname", "key") or _CONSTANT.match(
            expr.attr.value
        ):
            return True
    return False


def executes_sql(ctx: FileContext, call: cst.Call, methods: frozenset[str]) -> bool:
    """``receiver.<method>(...)`` where the receiver is a SQLAlchemy session or connection."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value not in methods:
        return False
    return is_session(ctx, func.value) or is_connection(ctx, func.value)


def is_text_call(ctx: FileContext, call: cst.Call) -> bool:
    return ctx.resolves_to(call.func, TEXT_FUNCTIONS)


def first_positional(call: cst.Call) -> cst.Arg | None:
    if call.args and call.args[0].keyword is None and not call.args[0].star:
        return call.args[0]
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in ("statement", "text"):
            return arg
    return None
