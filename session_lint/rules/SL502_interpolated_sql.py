from __future__ import annotations

import re

import libcst as cst

from session_lint.config import Config
from session_lint.roles import APP_AND_SCRIPT
from session_lint.rules.base import SESSION_OR_CONNECTION, SQLALCHEMY_IMPORT, Clause, Rule, clauses
from session_lint.semantics.scopes import BindingKind
from session_lint.semantics.sql import (
    DRIVER_SQL_METHODS,
    EXECUTE_METHODS,
    Built,
    Interpolation,
    built_string,
    executes_sql,
    first_positional,
    is_constant_like,
    is_text_call,
    literal_string,
)

_MAX_SQL = 90
# SQL text after which a value would be an identifier (table, column, schema, setting).
# SQL text after which an interpolated piece is a *value* (compared, quoted, counted,
# listed): the places a bound parameter goes. Identifiers (table and column names,
# DDL targets) cannot be bound and are not reported.
_VALUE_SLOT = re.compile(
    r"(?:=|<>|!=|<|>|\bLIKE|\bILIKE|\bIN\s*\(|\bLIMIT|\bOFFSET|\bVALUES\s*\(|\bBETWEEN"
    r"|\bWHEN|\bTHEN|\bELSE)\s*$",
    re.I,
)
_IN_LIST = re.compile(r"\b(?:IN|VALUES)\s*\([^)]*,\s*$", re.I)
# ``SET name = <value>``: PostgreSQL's SET takes no bound parameters; set_config() does.
_SETTING_SLOT = re.compile(
    r"^\s*SET\s+(?:LOCAL\s+|SESSION\s+)?(?P<name>[\w.]+)\s*(?:=|\bTO\b)\s*'?$", re.I
)
_PLACEHOLDER = re.compile(r"%\((?P<name>\w+)\)[sd]|%[sd]|\{(?P<field>\w*)\}")


class InterpolatedSql(Rule):
    """
    ## What it does
    Finds SQL built from runtime values — an f-string, `%` formatting, `.format()` or
    `+` concatenation — inside `text(...)`, or passed to `execute()`/`exec_driver_sql()`
    of a SQLAlchemy session or connection.

    ## Why is this bad?
    A value pasted into SQL is SQL: a user name like `x' OR '1'='1` changes what the
    statement does (SQL injection). Bound parameters (`:name` in `text()`, values
    passed separately) are sent apart from the statement text and cannot change it.
    A statement whose text changes with every value also defeats statement caching.

    Only pieces in a value position are reported: inside quotes, after a comparison,
    `LIKE`, `IN (`, `VALUES (`, `LIMIT`/`OFFSET`, or as the value of a `SET`.
    Identifiers (table and column names, DDL targets) cannot be bound parameters,
    and values fixed when the code is written (literals, `UPPER_CASE` constants,
    `Model.__tablename__`, quoting helpers) cannot inject anything; neither is
    reported.

    ## Example
    ```python
    from sqlalchemy import text

    async def find_user(session, email):
        return await session.scalar(text(f"SELECT id FROM users WHERE email = '{email}'"))
    ```

    Use instead:
    ```python
    from sqlalchemy import text

    async def find_user(session, email):
        return await session.scalar(
            text("SELECT id FROM users WHERE email = :email"), {"email": email}
        )
    ```

    ## Where it runs
    `app` and `script` files, not `test` or `migration` ones: there the values come from
    requests, arguments and files. Tests and migrations build SQL from their own
    constants (table names, batch sizes). `rule-roles` widens it (docs/roles.md).
    """

    code = "SL502"
    name = "interpolated-sql"
    message = "SQL built with {how}: injection risk; bind the values instead: {form}"
    setting_message = (
        "SQL built with {how}: injection risk; bind the value instead: "
        'text("SELECT set_config(\'{name}\', :value, true)"), {{"value": {value}}}'
    )
    roles = APP_AND_SCRIPT  # see ## Where it runs
    tokens = ("text", "execute", "scalar", "stream", "exec_driver_sql")

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        return (
            (("text",), SQLALCHEMY_IMPORT),  # sqlalchemy's text()
            (("exec_driver_sql",),),
            *clauses(config, ("execute", "scalar", "stream"), SESSION_OR_CONNECTION),
        )

    def visit_Call(self, node: cst.Call) -> None:
        if is_text_call(self.ctx, node):
            pass
        elif isinstance(node.func, cst.Attribute) and node.func.attr.value in DRIVER_SQL_METHODS:
            pass
        elif not executes_sql(self.ctx, node, EXECUTE_METHODS):
            return
        arg = first_positional(node)
        if arg is None:
            return
        built = self._built(arg.value)
        if built is None or all(is_constant_like(v) for v in built.values):
            return
        message = self._value_message(built)
        if message is not None:
            self.report(_interpolated_part(arg.value), message)

    def _built(self, expr: cst.BaseExpression) -> Built | None:
        built = built_string(expr)
        if built is None and isinstance(expr, cst.Name):
            bindings = self.ctx.scope.lookup(expr.value)
            if (
                len(bindings) == 1
                and bindings[0].kind is BindingKind.ASSIGNMENT
                and bindings[0].value is not None
            ):
                built = built_string(bindings[0].value)
        return built

    def _value_message(self, built: Built) -> str | None:
        """The message when a runtime value sits where SQL takes a value; None when
        every runtime piece is an identifier or fixed text."""
        segments = self._segments(built)
        if segments is None:
            return None
        before = ""
        for seg in segments:
            if isinstance(seg, str):
                before += seg
                continue
            if not is_constant_like(seg):
                code = self.ctx.module.code_for_node(seg)
                setting = _SETTING_SLOT.match(before)
                if setting:
                    return self.setting_message.format(
                        how=built.how.value, name=setting.group("name"), value=code
                    )
                if (
                    before.count("'") % 2 == 1
                    or _VALUE_SLOT.search(before)
                    or _IN_LIST.search(before)
                ):
                    return self.message.format(how=built.how.value, form=self._bind_form(built))
            before += "?"
        return None

    # -- the message's bind-parameter form -----------------------------------------
    def _bind_form(self, built: Built) -> str:
        segments = self._segments(built)
        if segments is None:
            return 'text("... = :value"), {"value": value}'
        sql, params = "", list[tuple[str, str]]()
        for i, seg in enumerate(segments):
            if isinstance(seg, str):
                sql += seg
                continue
            name = _param_name(seg) or f"p{len(params) + 1}"
            if name in [n for n, _ in params]:
                name = f"{name}_{i}"
            code = self.ctx.module.code_for_node(seg)
            following = segments[i + 1] if i + 1 < len(segments) else ""
            if sql.count("'") % 2 == 1 and isinstance(following, str) and "'" in following:
                # Inside a quoted literal: the whole literal becomes the parameter,
                # with its fixed text moved into the value ('%{term}%' -> f"%{term}%").
                start, end = sql.rindex("'"), following.index("'")
                prefix, suffix = sql[start + 1 :], following[:end]
                sql = sql[:start]
                segments[i + 1] = following[end + 1 :]
                if prefix or suffix:
                    code = f'f"{prefix}{{{code}}}{suffix}"'
            sql += f":{name}"
            params.append((name, code))
        sql = " ".join(sql.split())
        if len(sql) > _MAX_SQL:
            sql = sql[: _MAX_SQL - 3] + "..."
        values = ", ".join(f'"{n}": {code}' for n, code in params)
        return f'text("{sql}"), {{{values}}}'

    def _segments(self, built: Built) -> list[str | cst.BaseExpression] | None:
        if built.how is Interpolation.FSTRING:
            return _string_parts(built.template)
        if built.how is Interpolation.CONCAT:
            out: list[str | cst.BaseExpression] = []
            for part in _concat_operands(built.template):
                pieces = _string_parts(part)
                out.extend(pieces if pieces is not None else [part])
            return out
        template = literal_string(built.template)
        if template is None:
            return None
        values = list(built.values)
        out = []
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            if not values:
                return None
            out.append(template[pos : match.start()])
            out.append(values.pop(0))
            pos = match.end()
        out.append(template[pos:])
        return out


def _param_name(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        index = expr.slice[0].slice
        if isinstance(index, cst.Index):
            key = literal_string(index.value)
            if key is not None and key.isidentifier():
                return key
    return None


def _interpolated_part(expr: cst.BaseExpression) -> cst.BaseExpression:
    """In ``"SELECT ..." f"WHERE id = {x}"``, the f-string half: where the value goes in."""
    while isinstance(expr, cst.ConcatenatedString):
        left = expr.left
        expr = left if built_string(left) is not None else expr.right
    return expr


def _string_parts(node: cst.BaseExpression) -> list[str | cst.BaseExpression] | None:
    """Text and interpolated expressions of a string literal, f-string or implicit
    concatenation of them; None for anything else."""
    if isinstance(node, cst.FormattedString):
        out: list[str | cst.BaseExpression] = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                out.append(part.value)
            elif isinstance(part, cst.FormattedStringExpression):
                out.append(part.expression)
        return out
    if isinstance(node, cst.ConcatenatedString):
        left, right = _string_parts(node.left), _string_parts(node.right)
        return None if left is None or right is None else [*left, *right]
    text = literal_string(node)
    return None if text is None else [text]


def _concat_operands(expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
        return [*_concat_operands(expr.left), *_concat_operands(expr.right)]
    return [expr]
