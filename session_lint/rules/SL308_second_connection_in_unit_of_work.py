from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.scopes import BindingKind
from session_lint.core.walker import iter_nodes
from session_lint.known import ENGINE_CONSTRUCTORS, EXECUTE_METHODS
from session_lint.project.evidence import module_of
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_async_session_source
from session_lint.semantics.sql import first_positional
from session_lint.semantics.transactions import (
    is_write_statement,
    method_call,
    method_calls,
)

_ENGINE_BLOCKS = frozenset({"begin", "connect"})
# Session methods that end its unit of work: after one, the engine's write is a
# transaction of its own, not a second one beside an open one.
_ENDS = frozenset({"commit", "rollback", "close"})


class SecondConnectionInUnitOfWork(Rule):
    """
    ## What it does
    Finds a write through the application's engine (`async with engine.begin() as
    conn: await conn.execute(update(...))`, or `engine.connect()`) inside an open
    session block, after the session has been used and before it commits.

    ## Why is this bad?
    The session holds one connection and one transaction; `engine.begin()` checks
    out a second connection with a second transaction. They are two units of
    work:

    - the engine's write commits when its block ends, even if the session's work
      then fails and rolls back;
    - the session does not see the write until it starts a new transaction (under
      PostgreSQL's default `READ COMMITTED` a later statement does see it, while a
      row the session already loaded keeps its old state in the identity map);
    - a write to a row the session has updated and not committed waits for the
      session's lock: the request deadlocks against itself until a timeout.

    Behind a transaction pooler each connection is a pooler client of its own, so
    one request needs two server connections at once.

    Only the application's engine is considered: one imported from a module that
    builds the project's engine (the project index, docs/project-index.md) or that
    `engine-modules` names, or built at module level in the file.

    ## Example
    ```python
    from sqlalchemy import update

    from app.db import engine
    from app.models import Audit, User
    from session_runtime import get_session


    async def rename(user_id: int, name: str) -> None:
        async with get_session() as session:
            user = await session.get(User, user_id)
            user.name = name
            async with engine.begin() as conn:
                await conn.execute(update(Audit).values(last_user=user_id))
            await session.commit()
    ```

    Use instead:
    ```python
    from sqlalchemy import update

    from app.models import Audit, User
    from session_runtime import get_session


    async def rename(user_id: int, name: str) -> None:
        async with get_session() as session:
            user = await session.get(User, user_id)
            user.name = name
            await session.execute(update(Audit).values(last_user=user_id))
            await session.commit()
    ```

    ## Where it runs
    `app` files only: a test or a script may use a second connection on purpose
    (to see what another client sees). `rule-roles` widens it (docs/roles.md).
    """

    code = "SL308"
    name = "second-connection-in-unit-of-work"
    message = (
        "a write through `{engine}.{method}()` inside the open unit of work of "
        "`{session}`: a second connection and a second transaction, which commits "
        "even if `{session}` rolls back and is not part of its transaction; write "
        "through `{session}` instead"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("begin", "connect")
    requires = (SESSION, ("engine", "Engine"))

    def visit_With(self, node: cst.With) -> None:
        for item in node.items:
            call = method_call(item.item)
            if call is None or call.method not in _ENGINE_BLOCKS:
                continue
            engine = self._app_engine(call.receiver)
            if engine is None or not self._writes(node, item):
                continue
            session = self._open_session_used_before(node)
            if session is None:
                continue
            self.report(
                call.call,
                self.message.format(engine=engine, method=call.method, session=session),
            )

    def _writes(self, node: cst.With, item: cst.WithItem) -> bool:
        """Whether the block executes a write on the connection it opens."""
        if item.asname is None or not isinstance(item.asname.name, cst.Name):
            return False
        conn = item.asname.name.value
        for call in method_calls(node.body):
            if (
                call.method in EXECUTE_METHODS
                and isinstance(call.receiver, cst.Name)
                and call.receiver.value == conn
            ):
                statement = first_positional(call.call)
                if statement is not None and is_write_statement(self.ctx, statement.value):
                    return True
        return False

    def _app_engine(self, expr: cst.BaseExpression) -> str | None:
        """The name of the application's engine ``expr`` is, or None."""
        if not isinstance(expr, cst.Name):
            return None
        bindings = self.ctx.scope.lookup(expr.value)
        if len(bindings) != 1:
            return None
        binding = bindings[0]
        if binding.kind is BindingKind.IMPORT and binding.qualified_name:
            module = binding.qualified_name.rpartition(".")[0]
            index = self.ctx.config.project
            builders = {module_of(path)[0] for path in index.engine_builders}
            path = module.replace(".", "/")
            config = self.ctx.config
            if (
                module in builders
                or module in index.engine_modules
                or config.is_engine_module(f"{path}.py")
                or config.is_engine_module(f"{path}/__init__.py")
            ):
                return expr.value
            return None
        value = binding.value
        if (
            binding.kind is BindingKind.ASSIGNMENT
            and self.ctx.scope.module.bindings.get(expr.value) == [binding]
            and isinstance(value, cst.Call)
            and self.ctx.resolves_to(value.func, ENGINE_CONSTRUCTORS)
        ):
            return expr.value
        return None

    def _open_session_used_before(self, node: cst.With) -> str | None:
        """The session of an enclosing ``async with`` session block that was used
        before ``node`` and not committed, rolled back or closed since."""
        for outer in reversed(list(self.ctx.ancestor_chain())):
            if not isinstance(outer, cst.With) or outer.asynchronous is None:
                continue
            for item in outer.items:
                if (
                    item.asname is None
                    or not isinstance(item.asname.name, cst.Name)
                    or not is_async_session_source(self.ctx, item.item)
                ):
                    continue
                session = item.asname.name.value
                if _used_and_open(session, outer, node):
                    return session
        return None


def _used_and_open(session: str, outer: cst.With, node: cst.With) -> bool:
    """Whether, in source order before ``node``, ``outer``'s body calls a method
    of ``session`` and no commit, rollback or close follows."""
    used = False
    for sub in iter_nodes(outer.body):
        if sub is node:
            return used
        if (
            isinstance(sub, cst.Call)
            and isinstance(sub.func, cst.Attribute)
            and isinstance(sub.func.value, cst.Name)
            and sub.func.value.value == session
        ):
            used = sub.func.attr.value not in _ENDS
    return False
