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


# -- values that cannot carry SQL -----------------------------------------------------

# Builtins whose result is a number, and constructors of UUIDs: neither can hold a
# quote, a semicolon or a keyword, so neither can inject SQL (docs/rules/SL502.md).
_NUMBER_BUILTINS = frozenset({"int", "float", "len", "round", "abs", "hash", "ord"})
_NUMBER_OF_NUMBERS = frozenset({"min", "max", "sum"})  # a number when their arguments are
_UUID_MAKERS = frozenset(
    {"uuid.UUID", "uuid.uuid1", "uuid.uuid3", "uuid.uuid4", "uuid.uuid5", "uuid.uuid7"}
)
_NUMBER_TYPES = frozenset({"int", "float", "bool", "decimal.Decimal"})
_UUID_TYPES = frozenset({"uuid.UUID"})
_ARITHMETIC = (
    cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.Power,
)  # fmt: skip
_MAX_HOPS = 4  # ``a = b`` chains followed


def is_number_or_uuid(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope, hops: int = 0
) -> bool:
    """Whether ``expr`` is known to be a number or a UUID: a numeric literal,
    ``int()``/``float()``/``len()``/``round()``, ``uuid4()``/``UUID(...)``,
    arithmetic and ``min``/``max``/``sum`` of such values, or a name that is one:
    a parameter or variable annotated ``int``/``float``/``UUID`` (``Optional`` of
    one too), assigned one, a loop variable over ``range(...)``, or a call of a
    function of this module whose return is annotated so."""
    if hops > _MAX_HOPS:
        return False
    if isinstance(expr, (cst.Integer, cst.Float)):
        return True
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        return is_number_or_uuid(ctx, expr.expression, scope, hops)
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, _ARITHMETIC):
        return is_number_or_uuid(ctx, expr.left, scope, hops) and is_number_or_uuid(
            ctx, expr.right, scope, hops
        )
    if isinstance(expr, cst.Call):
        func = expr.func
        if isinstance(func, cst.Name):
            bindings = scope.lookup(func.value)
            if not bindings:
                if func.value in _NUMBER_BUILTINS:
                    return True
                if func.value in _NUMBER_OF_NUMBERS and expr.args:
                    return all(is_number_or_uuid(ctx, a.value, scope, hops) for a in expr.args)
            elif all(
                b.kind is BindingKind.DEF
                and isinstance(b.node, cst.FunctionDef)
                and b.node.returns is not None
                and _numeric_annotation(ctx, b.node.returns.annotation, scope)
                for b in bindings
            ):
                return True  # ``def remaining_ms(...) -> int``
        return ctx.resolves_to(func, _UUID_MAKERS, scope)
    if isinstance(expr, cst.Name):
        return _name_is_number_or_uuid(ctx, expr.value, scope, hops)
    return False


def _name_is_number_or_uuid(ctx: FileContext, name: str, scope: Scope, hops: int) -> bool:
    bindings = scope.lookup(name)
    if not bindings:
        return False
    for binding in bindings:
        if binding.annotation is not None:
            if not _numeric_annotation(ctx, binding.annotation, scope):
                return False
        elif binding.kind is BindingKind.ASSIGNMENT and binding.value is not None:
            if not is_number_or_uuid(ctx, binding.value, scope, hops + 1):
                return False
        elif binding.kind is BindingKind.FOR and isinstance(binding.node, cst.For):
            loop = binding.node
            if not (
                isinstance(loop.target, cst.Name)
                and isinstance(loop.iter, cst.Call)
                and isinstance(loop.iter.func, cst.Name)
                and loop.iter.func.value == "range"
                and not scope.lookup("range")
            ):
                return False
        else:
            return False
    return True


def _numeric_annotation(ctx: FileContext, annotation: cst.BaseExpression, scope: Scope) -> bool:
    """``int``, ``float``, ``UUID``, ``Optional[int]``, ``int | None``."""
    if isinstance(annotation, cst.Subscript) and len(annotation.slice) == 1:
        index = annotation.slice[0].slice
        if isinstance(index, cst.Index) and ctx.resolves_to(
            annotation.value, frozenset({"typing.Optional"}), scope
        ):
            return _numeric_annotation(ctx, index.value, scope)
        return False
    if isinstance(annotation, cst.BinaryOperation) and isinstance(annotation.operator, cst.BitOr):
        sides = (annotation.left, annotation.right)
        return all(
            (isinstance(s, cst.Name) and s.value == "None") or _numeric_annotation(ctx, s, scope)
            for s in sides
        )
    if isinstance(annotation, cst.Name) and annotation.value in _NUMBER_TYPES:
        return not scope.lookup(annotation.value)
    return ctx.resolves_to(annotation, _NUMBER_TYPES | _UUID_TYPES, scope)


def doubles_quotes(ctx: FileContext, expr: cst.BaseExpression, scope: Scope) -> bool:
    """``value.replace("'", "''")``, or a name bound once to it: the escape that
    makes any text safe inside a single-quoted SQL literal."""
    if isinstance(expr, cst.Name):
        bindings = scope.lookup(expr.value)
        if len(bindings) != 1 or bindings[0].value is None:
            return False
        expr = bindings[0].value
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value == "replace"
        and len(expr.args) == 2
        and literal_string(expr.args[0].value) == "'"
        and literal_string(expr.args[1].value) == "''"
    )
