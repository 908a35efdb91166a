from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION_OR_CONNECTION
from session_lint.core.walker import iter_nodes
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.project.effects import STATEMENT_METHODS
from session_lint.project.roles import APP_SCRIPT_AND_MIGRATION
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_connection, is_engine, is_session
from session_lint.semantics.sql import literal_string
from session_lint.semantics.transactions import method_call


class IsolationLevelInTransaction(Rule):
    """
    ## What it does
    Finds `execution_options(isolation_level=...)` on a connection that has
    already begun a transaction: inside `async with engine.begin() as conn:`, or
    after a statement on a connection from `engine.connect()` (autobegin); and
    `session.connection(execution_options={"isolation_level": ...})` after the
    session ran a statement.

    ## Why is this bad?
    SQLAlchemy sets the isolation level when a transaction begins; once one has,
    it refuses: `InvalidRequestError: This connection has already initialized a
    SQLAlchemy Transaction() object via begin() or autobegin; isolation_level may
    not be altered unless rollback() or commit() is called first.`
    (`tests/runtime/test_transaction_state.py`). A real case: a database-rename
    migration helper opened `source_engine.begin()` and `dest_engine.begin()`, then
    asked both connections for `AUTOCOMMIT`, so it crashed halfway through the copy
    every time it ran.

    Set the level before the transaction begins: on `engine.connect()` before the
    first statement, on the engine (`engine.execution_options(isolation_level=...)`),
    or in `create_async_engine(isolation_level=...)`.

    ## Known problems
    Statements are followed in source order through one function. Silent:
    `engine.execution_options(...)`, `create_async_engine(isolation_level=...)`, and
    the option on a fresh `engine.connect()` before its first statement.

    ## Example
    ```python
    from sqlalchemy import text

    async def create_database(engine, name):
        async with engine.begin() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    ```

    Use instead:
    ```python
    from sqlalchemy import text

    async def create_database(engine, name):
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    ```

    ## Where it runs
    `app`, `script` and `migration` files: the error is the same everywhere (the
    real case is a migration helper run as a script). Not `test` files.
    `rule-roles` widens it (docs/roles.md).

    ## Fix safety
    Where the block is `async with engine.begin() as conn:`, the call is its first
    statement and the level is `"AUTOCOMMIT"`, the fix opens the block with
    `engine.connect()` instead: each statement then commits on its own, which is
    what `AUTOCOMMIT` asks for. It is unsafe: the block no longer commits or rolls
    back as one transaction. Other levels are not fixed (their statements would
    then need a transaction of their own).
    """

    code = "SL311"
    name = "isolation-level-in-transaction"
    message = (
        "`isolation_level` set on `{key}` after its transaction began ({why}): SQLAlchemy "
        "raises `InvalidRequestError: This connection has already initialized a SQLAlchemy "
        "Transaction() object via begin() or autobegin; isolation_level may not be altered`; "
        "set it before the first statement, on `engine.connect()`"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_SCRIPT_AND_MIGRATION  # see ## Where it runs
    tokens = ("isolation_level",)
    requires = (SESSION_OR_CONNECTION,)

    def visit_Call(self, node: cst.Call) -> None:
        call = method_call(node)
        if call is None or call.key is None:
            return
        if call.method == "execution_options" and _sets_isolation(node):
            if not is_connection(self.ctx, call.receiver) and not self._conn_name(call.key):
                return
        elif call.method == "connection" and _options_set_isolation(node):
            if not is_session(self.ctx, call.receiver):
                return
        else:
            return
        why = self._begun(node, call.key)
        if why is not None:
            self.report(
                node,
                self.message.format(key=call.key, why=why),
                fix=self._fix(node, call.key),
            )

    def _conn_name(self, key: str) -> bool:
        """``conn`` bound by ``async with engine.begin()/connect() as conn``."""
        for binding in self.ctx.scope.lookup(key):
            found = method_call(binding.value) if binding.value is not None else None
            if found is not None and found.method in ("begin", "connect"):
                return _engine_like(self, found.receiver)
        return False

    def _begun(self, node: cst.Call, key: str) -> str | None:
        """Why ``key``'s transaction has begun by the time ``node`` runs."""
        block = self._begin_block(key)
        if block is not None:
            return f"`{key}` comes from `engine.begin()`"
        function = self.ctx.function
        if function is None:
            return None
        inside = {id(n) for n in iter_nodes(node)}
        began: str | None = None
        for sub in iter_nodes(function.body):
            if id(sub) in inside:
                return began
            found = method_call(sub) if isinstance(sub, cst.Call) else None
            if found is None or found.key != key:
                continue
            if found.method in ("commit", "rollback", "close"):
                began = None
            elif found.method in STATEMENT_METHODS - {"connection"}:
                began = f"`{key}.{found.method}()` ran before it (autobegin)"
        return None

    def _begin_block(self, key: str) -> cst.With | None:
        for ancestor in reversed(self.ctx.ancestor_chain()):
            if isinstance(ancestor, cst.FunctionDef):
                return None
            if not isinstance(ancestor, cst.With):
                continue
            for item in ancestor.items:
                found = method_call(item.item)
                if (
                    found is not None
                    and found.method == "begin"
                    and item.asname is not None
                    and isinstance(item.asname.name, cst.Name)
                    and item.asname.name.value == key
                    and _engine_like(self, found.receiver)
                ):
                    return ancestor
        return None

    def _fix(self, node: cst.Call, key: str) -> Fix | None:
        block = self._begin_block(key)
        if block is None or not _autocommit(node) or not isinstance(block.body, cst.IndentedBlock):
            return None
        first = block.body.body[0] if block.body.body else None
        if first is None or not any(n is node for n in iter_nodes(first)):
            return None
        items = []
        for item in block.items:
            found = method_call(item.item)
            if found is not None and found.method == "begin" and item.asname is not None:
                call = found.call
                func = call.func
                assert isinstance(func, cst.Attribute)
                new_call = call.with_changes(func=func.with_changes(attr=cst.Name("connect")))
                item = item.with_changes(item=new_call)
            items.append(item)
        return Fix.replace(
            block,
            block.with_changes(items=items),
            Applicability.UNSAFE,
            description="open the block with `engine.connect()`: AUTOCOMMIT commits each statement",
        )


def _engine_like(rule: IsolationLevelInTransaction, expr: cst.BaseExpression) -> bool:
    """An engine: built by ``create_async_engine(...)``, or named one (``engine``,
    ``source_engine``; a parameter of a migration helper is rarely annotated)."""
    if is_engine(rule.ctx, expr):
        return True
    name = expr.attr.value if isinstance(expr, cst.Attribute) else getattr(expr, "value", "")
    return isinstance(name, str) and name.lower().endswith("engine")


def _sets_isolation(call: cst.Call) -> bool:
    return any(a.keyword is not None and a.keyword.value == "isolation_level" for a in call.args)


def _options_set_isolation(call: cst.Call) -> bool:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "execution_options":
            value = arg.value
            if isinstance(value, cst.Dict):
                return any(
                    isinstance(e, cst.DictElement) and literal_string(e.key) == "isolation_level"
                    for e in value.elements
                )
            if isinstance(value, cst.Call):
                return _sets_isolation(value)
    return False


def _autocommit(call: cst.Call) -> bool:
    return any(
        a.keyword is not None
        and a.keyword.value == "isolation_level"
        and literal_string(a.value) == "AUTOCOMMIT"
        for a in call.args
    )
