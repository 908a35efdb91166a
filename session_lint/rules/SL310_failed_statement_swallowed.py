from __future__ import annotations

from collections.abc import Iterator, Sequence

import libcst as cst

from session_lint.core.prefilter import SESSION_OR_CONNECTION
from session_lint.core.walker import iter_nodes
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.project.effects import STATEMENT_METHODS
from session_lint.project.roles import APP_SCRIPT_AND_MIGRATION
from session_lint.rules.base import Rule
from session_lint.semantics.effects import call_effect
from session_lint.semantics.sessions import is_connection, is_session
from session_lint.semantics.transactions import owning_begin_block

# What a handler must catch for a failed statement to be swallowed: anything, or a
# database error — SQLAlchemy's or a driver's, by name or by module.
_BROAD = frozenset({"Exception", "BaseException"})
_DATABASE_ERRORS = frozenset(
    {"SQLAlchemyError", "DBAPIError", "DatabaseError", "IntegrityError", "OperationalError",
     "ProgrammingError", "DataError", "InternalError", "NotSupportedError", "InterfaceError",
     "PendingRollbackError", "PostgresError", "UniqueViolationError",
     "ForeignKeyViolationError", "InsufficientPrivilegeError", "QueryCanceledError"}
)  # fmt: skip
_DATABASE_MODULES = ("sqlalchemy.", "asyncpg.", "psycopg.", "psycopg2.", "sqlite3.")
# Raised by SQLAlchemy itself, no statement failed: the transaction is fine
# (``NoResultFound`` after a SELECT that returned nothing).
_CLIENT_SIDE = frozenset(
    {"NoResultFound", "MultipleResultsFound", "InvalidRequestError", "ArgumentError",
     "CompileError", "NoSuchColumnError", "NoInspectionAvailable", "UnmappedInstanceError",
     "ObjectDeletedError", "DetachedInstanceError", "StaleDataError"}
)  # fmt: skip
_ENDS = frozenset({"commit", "rollback", "close"})


class FailedStatementSwallowed(Rule):
    """
    ## What it does
    Finds a statement on a session or connection inside a `try` whose `except`
    swallows the error — it neither re-raises, raises another, rolls back, nor
    leaves the function — after which the same session or connection runs another
    statement in the same transaction: later in the function, or in the next
    iteration of the loop the `try` is in. Statements include those a project
    function runs on the session it is handed (the project index's effect
    summaries, docs/project-index.md). Reported at the `except`.

    ## Why is this bad?
    On PostgreSQL a failed statement aborts the whole transaction. Every later
    statement in it fails with `current transaction is aborted, commands ignored
    until end of transaction block` (asyncpg's `InFailedSQLTransactionError`);
    after a failed `flush()` SQLAlchemy itself refuses with `PendingRollbackError:
    This Session's transaction has been rolled back due to a previous exception
    during flush`. The `except` meant "carry on without it", and nothing after it
    can run: a batch reports items created that were never committed, or the
    commit at the end fails. `tests/runtime/test_failed_statement.py` shows both
    errors, and the savepoint that avoids them.

    A real case: `SET LOCAL temp_file_limit = '512MB'` wrapped in `try/except
    SQLAlchemyError: log.debug(...)` "so the query still runs under the server
    default" — only superusers may set that parameter, so for every other role
    the query after it failed.

    Run the statement that may fail in a savepoint (`async with
    session.begin_nested():`), which rolls back only itself, or roll back in the
    handler and start again.

    ## Known problems
    A handler that catches only errors that are not the database's (`ValueError`,
    `HTTPException`, the project's own exceptions…) is not reported: only a bare
    `except`, `Exception`, and SQLAlchemy's or a driver's errors count. Statements are followed in
    source order, and a project call counts only when the index can resolve it.

    Silent: the statement already runs in `begin_nested()`; the handler rolls
    back (SL307's ground) or leaves the function (`return`, `raise`, or an `if`
    right after the `try` that raises on what the handler set); nothing runs on
    the session after the `try` before a commit, rollback or close; the `try` is
    the last use inside its own `begin()` block (the next loop iteration begins a
    new transaction); the session is opened by a `with` inside the `try` (the
    block closed it before the handler ran).

    ## Example
    ```python
    import logging

    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import AsyncSession

    log = logging.getLogger(__name__)

    async def report(session: AsyncSession):
        try:
            await session.execute(text("SET LOCAL temp_file_limit = '512MB'"))
        except SQLAlchemyError:
            log.debug("running with the default temp_file_limit")
        return (await session.execute(text("SELECT * FROM big_report"))).all()
    ```

    Use instead:
    ```python
    import logging

    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import AsyncSession

    log = logging.getLogger(__name__)

    async def report(session: AsyncSession):
        try:
            async with session.begin_nested():
                await session.execute(text("SET LOCAL temp_file_limit = '512MB'"))
        except SQLAlchemyError:
            log.debug("running with the default temp_file_limit")
        return (await session.execute(text("SELECT * FROM big_report"))).all()
    ```

    ## Where it runs
    `app`, `script` and `migration` files: the aborted transaction fails the same
    everywhere, a migration helper run as a script included. Not `test` files,
    where a test may provoke the failure on purpose. `rule-roles` widens it
    (docs/roles.md).

    ## Fix safety
    Where the `try` holds one awaited statement on an async session, the fix runs
    it in a savepoint (`async with session.begin_nested():` inside the `try`). It
    is unsafe: what a failure rolls back changes (the savepoint, instead of
    nothing until the transaction fails).
    """

    code = "SL310"
    name = "failed-statement-swallowed"
    message = (
        "`except` swallows a failed `{call}`, and `{key}` runs another statement after it in "
        "the same transaction: on PostgreSQL the failure aborted the transaction, so that "
        "statement fails with `current transaction is aborted, commands ignored until end of "
        "transaction block` (after a failed flush: `PendingRollbackError`); run it in "
        "`async with {key}.begin_nested():`, or roll back in the handler"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_SCRIPT_AND_MIGRATION  # see ## Where it runs
    tokens = ("except",)
    requires = (SESSION_OR_CONNECTION,)

    def visit_Try(self, node: cst.Try) -> None:
        function = self.ctx.function
        if function is None:
            return
        catching = [h for h in node.handlers if _catches_database_errors(self, h.type)]
        if not catching:
            return  # what the try runs matters only to a handler that catches it
        statements = list(self._statements(node.body))
        if not statements:
            return
        opened_inside = {
            item.asname.name.value
            for sub in iter_nodes(node.body)
            if isinstance(sub, cst.With)
            for item in sub.items
            if item.asname is not None and isinstance(item.asname.name, cst.Name)
        }
        for handler in catching:
            if not self._swallows(handler, statements) or self._leaves_after(node, handler):
                continue
            for key, call in statements:
                if key in opened_inside:
                    continue  # the session's block closed it before the handler ran
                if self._runs_again(function, node, key):
                    self.report(
                        handler,
                        self.message.format(call=call, key=key),
                        fix=self._fix(node, key),
                    )
                    return

    # -- what the try runs ------------------------------------------------------------
    def _statements(self, body: cst.BaseSuite) -> Iterator[tuple[str, str]]:
        """(session key, call text) of the statements in ``body`` not already in a
        savepoint."""
        saved: set[int] = set()
        for sub in iter_nodes(body):
            # Exact types: ``isinstance`` on a libcst class goes through ``ABCMeta``.
            if type(sub) is cst.With and any(
                _method(item.item) == "begin_nested" for item in sub.items
            ):
                saved.update(id(n) for n in iter_nodes(sub.body))
            if type(sub) is not cst.Call or id(sub) in saved:
                continue
            found = self._statement(sub)
            if found is not None:
                yield found

    def _statement(self, call: cst.Call) -> tuple[str, str] | None:
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value in STATEMENT_METHODS:
            key = self._key(func.value)
            if key is not None:
                return key, f"{key}.{func.attr.value}()"
        # A project function handed a session: what it does is asked only then
        # (resolving a callee is the costly part, and most calls hand none).
        key = next((k for arg in call.args if (k := self._key(arg.value)) is not None), None)
        if key is None:
            return None
        effect = call_effect(self.ctx, call, self.ctx.scope)
        if effect is not None and effect.uses_db:
            return key, f"{effect.name}()"
        return None

    def _key(self, expr: cst.BaseExpression) -> str | None:
        scope = self.ctx.scope
        if isinstance(expr, cst.Name) and (
            is_session(self.ctx, expr, scope) or is_connection(self.ctx, expr, scope)
        ):
            return expr.value
        if (
            isinstance(expr, cst.Attribute)
            and isinstance(expr.value, cst.Name)
            and expr.value.value == "self"
            and is_session(self.ctx, expr, scope)
        ):
            return f"self.{expr.attr.value}"
        return None

    # -- the handler ----------------------------------------------------------------
    def _swallows(self, handler: cst.ExceptHandler, statements: Sequence[tuple[str, str]]) -> bool:
        """Whether ``handler`` (one that catches database errors) carries on without
        ending the transaction of any of ``statements``."""
        keys = {key for key, _ in statements}
        for sub in iter_nodes(handler.body):
            if isinstance(sub, (cst.Raise, cst.Return)):
                return False
            if isinstance(sub, cst.Call) and _method(sub) in ("rollback", "close"):
                return False
            if isinstance(sub, cst.Call) and isinstance(sub.func, cst.Attribute):
                key = self._key(sub.func.value)
                if key in keys and sub.func.attr.value in _ENDS:
                    return False
        return True

    # -- what runs after ------------------------------------------------------------
    def _runs_again(self, function: cst.FunctionDef, node: cst.Try, key: str) -> bool:
        """The first use of ``key`` after the ``try`` is a statement, not a commit,
        rollback or close: in a loop, the rest of the iteration, then the next one
        from the top; then what follows."""
        block = owning_begin_block(self.ctx, key)
        if block is not None:
            # The transaction ends with its ``begin()`` block: only what follows the
            # ``try`` inside that block runs in it (a loop inside the block included).
            calls = [n for n in iter_nodes(block.body) if isinstance(n, cst.Call)]
            loop = self._enclosing_loop(node)
            looped = loop is not None and any(n is loop for n in iter_nodes(block.body))
            after = _after(calls, node)
            if looped and loop is not None:
                after += [n for n in iter_nodes(loop.body) if isinstance(n, cst.Call)]
            return bool(self._first_use(after, key))
        loop = self._enclosing_loop(node)
        region = loop if loop is not None else node
        if loop is not None:
            calls = [n for n in iter_nodes(loop.body) if isinstance(n, cst.Call)]
            verdict = self._first_use(_after(calls, node) + calls, key)
            if verdict is not None:
                return verdict
        calls = [n for n in iter_nodes(function.body) if isinstance(n, cst.Call)]
        return bool(self._first_use(_after(calls, region), key))

    def _first_use(self, calls: Sequence[cst.Call], key: str) -> bool | None:
        for call in calls:
            verdict = self._use(call, key)
            if verdict is not None:
                return verdict
        return None

    def _use(self, call: cst.Call, key: str) -> bool | None:
        """True: a statement on ``key``; False: it ends the transaction; None: not
        a use of ``key``."""
        func = call.func
        if isinstance(func, cst.Attribute) and self._key(func.value) == key:
            if func.attr.value in _ENDS:
                return False
            if func.attr.value in STATEMENT_METHODS:
                return True
            return None
        found = self._statement(call)
        return True if found is not None and found[0] == key else None

    def _leaves_after(self, node: cst.Try, handler: cst.ExceptHandler) -> bool:
        """``except DBAPIError: deployment = None`` then ``if not deployment: raise
        HTTPException(404)``: the failure path leaves right after the ``try``."""
        assigned = {
            t.target.value
            for sub in iter_nodes(handler.body)
            if isinstance(sub, cst.Assign)
            for t in sub.targets
            if isinstance(t.target, cst.Name)
        }
        chain = self.ctx.ancestor_chain()
        block = chain[-1] if chain else None
        if not assigned or not isinstance(block, cst.IndentedBlock):
            return False
        body = list(block.body)
        index = next((i for i, s in enumerate(body) if s is node), None)
        if index is None or index + 1 >= len(body):
            return False
        following = body[index + 1]
        if not isinstance(following, cst.If):
            return False
        named = {n.value for n in iter_nodes(following.test) if isinstance(n, cst.Name)}
        first = following.body.body[0] if isinstance(following.body, cst.IndentedBlock) else None
        leaves = isinstance(first, cst.SimpleStatementLine) and isinstance(
            first.body[0], (cst.Raise, cst.Return)
        )
        return bool(named & assigned) and leaves

    def _enclosing_loop(self, node: cst.Try) -> cst.For | cst.While | None:
        for ancestor in reversed(self.ctx.ancestor_chain()):
            if isinstance(ancestor, (cst.FunctionDef, cst.Lambda)):
                return None
            if isinstance(ancestor, (cst.For, cst.While)):
                return ancestor
        return None

    # -- the fix -----------------------------------------------------------------------
    def _fix(self, node: cst.Try, key: str) -> Fix | None:
        body = node.body
        if not isinstance(body, cst.IndentedBlock) or len(body.body) != 1:
            return None
        statement = body.body[0]
        if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1):
            return None
        small = statement.body[0]
        value = small.value if isinstance(small, (cst.Expr, cst.Assign)) else None
        if not isinstance(value, cst.Await):
            return None
        target: cst.BaseExpression = (
            cst.Name(key)
            if "." not in key
            else cst.Attribute(value=cst.Name("self"), attr=cst.Name(key.split(".", 1)[1]))
        )
        savepoint = cst.With(
            items=[
                cst.WithItem(
                    item=cst.Call(func=cst.Attribute(value=target, attr=cst.Name("begin_nested")))
                )
            ],
            body=cst.IndentedBlock(body=[statement.with_changes(leading_lines=())]),
            asynchronous=cst.Asynchronous(),
            leading_lines=statement.leading_lines,
        )
        new = node.with_changes(body=body.with_changes(body=[savepoint]))
        return Fix.replace(
            node,
            new,
            Applicability.UNSAFE,
            description=f"run the statement in `async with {key}.begin_nested():`",
        )


def _after(calls: Sequence[cst.Call], node: cst.CSTNode) -> list[cst.Call]:
    """The calls of ``calls`` (in source order) that come after ``node``'s own."""
    inside = {id(n) for n in iter_nodes(node)}
    seen = False
    out: list[cst.Call] = []
    for call in calls:
        if id(call) in inside:
            seen = True
        elif seen:
            out.append(call)
    return out


def _method(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, cst.Await):
        expr = expr.expression
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        return expr.func.attr.value
    return None


def _catches_database_errors(
    rule: FailedStatementSwallowed, caught: cst.BaseExpression | None
) -> bool:
    """A bare ``except``, ``Exception``, or a database error class."""
    if caught is None:
        return True
    names = [e.value for e in caught.elements] if isinstance(caught, cst.Tuple) else [caught]
    for name in names:
        last = name.attr.value if isinstance(name, cst.Attribute) else getattr(name, "value", "")
        if not isinstance(last, str):
            continue
        if last in _BROAD or last in _DATABASE_ERRORS:
            return True
        if last not in _CLIENT_SIDE and any(
            q.startswith(_DATABASE_MODULES) for q in rule.ctx.qualified_names(name)
        ):
            return True
    return False
