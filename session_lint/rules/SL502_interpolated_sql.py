from __future__ import annotations

import re

import libcst as cst

from session_lint.core.prefilter import SESSION_OR_CONNECTION, SQLALCHEMY_IMPORT, Clause, clauses
from session_lint.core.scopes import BindingKind
from session_lint.core.walker import iter_nodes
from session_lint.known import DRIVER_SQL_METHODS, EXECUTE_METHODS, sql_head
from session_lint.project.config import Config
from session_lint.project.roles import APP_AND_SCRIPT
from session_lint.rules.base import Rule
from session_lint.semantics.ownership import is_route_handler
from session_lint.semantics.sessions import head_name
from session_lint.semantics.sql import (
    Built,
    Interpolation,
    built_string,
    concat_parts,
    doubles_quotes,
    executes_sql,
    first_positional,
    is_constant_like,
    is_number_or_uuid,
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
# SQLite's PRAGMA takes no bound parameters: what it is given is a name.
_PRAGMA = re.compile(r"PRAGMA\b", re.I)
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

    Pieces in a value position are reported: inside quotes, after a comparison,
    `LIKE`, `IN (`, `VALUES (`, `LIMIT`/`OFFSET`, or as the value of a `SET`.
    Identifiers (table and column names, DDL targets) cannot be bound parameters:
    one is reported only when it is a parameter of the enclosing function (a route's
    `table: str` above all), typed `str` or not typed, never rebound, and nothing in
    the function checks it: no comparison with it (`if table not in ALLOWED:
    raise ...`), no call given it (`re.fullmatch(PATTERN, table)`, a quoting
    helper), no method of it (`table.isidentifier()`). Values fixed when the code is
    written (literals, `UPPER_CASE` constants, `Model.__tablename__`, quoting
    helpers) cannot inject anything and are never reported; nor can numbers and
    UUIDs: numeric literals, `int()`, `float()`, `len()`, `round()`, `uuid4()`,
    `UUID(...)`, arithmetic and `min`/`max` of numbers, a loop variable over
    `range(...)`, and a parameter or variable annotated `int`, `float` or `UUID`
    (or assigned one of these), and a call of a function of the same module whose
    return is annotated `int`, `float` or `UUID` are left alone. So is text
    escaped for the quoted literal it sits in (`'{payload.replace("'", "''")}'`,
    or a name bound to that).

    A check anywhere in the function counts, not only one on every path before the
    SQL is built: this misses a check in the wrong place, rather than flag checked
    code.

    ## Known problems
    Identifiers from parameters are reported in route handlers only (a function
    decorated `@app.get(...)`/`@router.post(...)`), where the parameter is the
    request's. In any other function a parameter used as a name is most often an
    internal one (a database adapter's `create_table(schema_name, table_name)`):
    on the real-code corpus (`docs/corpus.md`) all six such findings outside
    routes were internal plumbing. A name passed from a route into a service is
    missed.

    Not reported either, by design: a piece that is part of a dotted name
    (`{alias}.{column}`, even after `=` in a join's `ON`); a whole `IN (...)` list
    from a local name (`IN ({placeholders})`, a string of bind markers built next
    to its parameters); SQLite `PRAGMA` statements, which take no bound
    parameters.

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
    identifier_message = (
        "`{name}`, a parameter of `{function}()`, is pasted into SQL as a table or "
        "column name with nothing checking it: SQL injection (a caller's "
        "`users; DROP TABLE users` is SQL). Names cannot be bound: check it first "
        "(`if {name} not in ALLOWED: raise ValueError({name})`) or quote it"
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
        if built is None or all(self._harmless(v) for v in built.values):
            return
        message = self._value_message(built)
        if message is None:
            message = self._identifier_message(built, arg.value)
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
        if segments is None or _PRAGMA.match(
            sql_head("".join(s for s in segments if isinstance(s, str)))
        ):
            return None
        before = ""
        for index, seg in enumerate(segments):
            if isinstance(seg, str):
                before += seg
                continue
            following = segments[index + 1] if index + 1 < len(segments) else ""
            quoted = before.count("'") % 2 == 1
            if not quoted and (
                before.endswith(".") or (isinstance(following, str) and following.startswith("."))
            ):
                before += "?"
                continue  # ``{alias}.{column}``: a part of a dotted name, an identifier
            if not quoted and self._placeholder_list(seg, before, following):
                before += "?"
                continue
            if quoted and doubles_quotes(self.ctx, seg, self.ctx.scope):
                before += "?"
                continue  # escaped for a quoted literal: ``'{text.replace("'", "''")}'``
            if not self._harmless(seg):
                code = self.ctx.module.code_for_node(seg)
                setting = _SETTING_SLOT.match(before)
                if setting:
                    return self.setting_message.format(
                        how=built.how.value, name=setting.group("name"), value=code
                    )
                if quoted or _VALUE_SLOT.search(before) or _IN_LIST.search(before):
                    return self.message.format(how=built.how.value, form=self._bind_form(built))
            before += "?"
        return None

    def _harmless(self, value: cst.BaseExpression) -> bool:
        """Fixed when the code is written, or a number or a UUID: cannot inject."""
        return is_constant_like(value) or is_number_or_uuid(self.ctx, value, self.ctx.scope)

    def _placeholder_list(self, seg: cst.BaseExpression, before: str, following: object) -> bool:
        """``IN ({placeholders})``, the whole list from a local name: the usual way to
        bind a list, with ``placeholders`` a string of ``:p0, :p1`` markers built
        next to its parameters; what it holds cannot be told from here."""
        if not (
            isinstance(seg, cst.Name)
            and re.search(r"\bIN\s*\(\s*$", before, re.I)
            and isinstance(following, str)
            and following.lstrip().startswith(")")
        ):
            return False
        bindings = self.ctx.scope.lookup(seg.value)
        return bool(bindings) and all(
            b.kind in (BindingKind.ASSIGNMENT, BindingKind.OTHER) for b in bindings
        )

    # -- identifiers from parameters ------------------------------------------------
    def _identifier_message(self, built: Built, sql: cst.BaseExpression) -> str | None:
        """The message when a piece in an identifier position is a parameter of the
        enclosing function that nothing in it checks. Anything the function does
        with the parameter besides building this SQL (an ``in`` test, a regex
        match, a quoting or validating call, a reassignment) counts as a check:
        a miss costs less than a false alarm."""
        function = self.ctx.function
        segments = self._segments(built)
        if function is None or segments is None:
            return None
        outer = self.ctx.scope.enclosing_function()
        if (
            outer is None
            or outer.parent is None
            or not is_route_handler(self.ctx, function, outer.parent)
        ):
            return None  # see ## Known problems
        builders: set[int] = {id(n) for n in iter_nodes(sql)}
        for node in self._assigned_sql(sql):
            builders.update(id(n) for n in iter_nodes(node))
        for seg in segments:
            if not isinstance(seg, cst.Name) or not self._bare_parameter(seg.value, function):
                continue
            if not any(
                id(n) not in builders and _checks(n, seg.value) for n in iter_nodes(function.body)
            ):
                return self.identifier_message.format(name=seg.value, function=function.name.value)
        return None

    def _assigned_sql(self, sql: cst.BaseExpression) -> list[cst.BaseExpression]:
        """The string a name holding the SQL was assigned (see ``_built``)."""
        if not isinstance(sql, cst.Name):
            return []
        bindings = self.ctx.scope.lookup(sql.value)
        return [b.value for b in bindings if b.value is not None]

    def _bare_parameter(self, name: str, function: cst.FunctionDef) -> bool:
        """A parameter of ``function``, never rebound, typed ``str`` or not typed
        (a ``Literal``, an ``Enum`` or any other type constrains it)."""
        bindings = self.ctx.scope.lookup(name)
        if len(bindings) != 1 or bindings[0].kind is not BindingKind.PARAM:
            return False
        params = function.params
        if not any(
            p.name.value == name
            for p in (*params.posonly_params, *params.params, *params.kwonly_params)
        ):
            return False
        annotation = bindings[0].annotation
        return annotation is None or (
            isinstance(annotation, cst.Name) and annotation.value == "str"
        )

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
            for part in concat_parts(built.template):
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


def _checks(node: cst.CSTNode, name: str) -> bool:
    """Whether ``node`` may constrain the value of ``name``: a comparison with it
    (``name not in ALLOWED``), a call given it (``re.fullmatch(PATTERN, name)``,
    ``quote(name)``), a method of it (``name.isidentifier()``), a ``match`` on it."""

    def is_name(expr: cst.CSTNode) -> bool:
        return isinstance(expr, cst.Name) and expr.value == name

    if isinstance(node, cst.Comparison):
        return is_name(node.left) or any(is_name(c.comparator) for c in node.comparisons)
    if isinstance(node, cst.Call):
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "format":
            return False  # ``"... {}".format(name)`` builds SQL, checks nothing
        return any(is_name(a.value) for a in node.args) or (
            isinstance(func, cst.Attribute) and is_name(func.value)
        )
    if isinstance(node, cst.Match):
        return is_name(node.subject)
    return False


def _param_name(expr: cst.BaseExpression) -> str | None:
    """``x`` for ``x``, ``obj.x`` and ``data["x"]``."""
    name = head_name(expr)
    if name is not None:
        return name
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
