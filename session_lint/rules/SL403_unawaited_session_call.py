from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION, Clause, async_session_groups
from session_lint.core.scopes import BindingKind
from session_lint.core.walker import iter_nodes
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.project.config import Config
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_async_session

# AsyncSession's coroutine methods (``add``, ``add_all``, ``expunge`` are plain methods).
COROUTINE_METHODS = frozenset(
    {
        "execute",
        "commit",
        "flush",
        "refresh",
        "close",
        "rollback",
        "scalar",
        "scalars",
        "get",
        "get_one",
        "delete",
        "merge",
        "stream",
        "stream_scalars",
        "invalidate",
        "reset",
        "run_sync",
        "connection",
    }
)


class UnawaitedSessionCall(Rule):
    """
    ## What it does
    Finds a coroutine method of an `AsyncSession` — `execute`, `commit`, `flush`,
    `refresh`, `close`, `rollback`, `scalar`, `scalars`, `get`, `delete`, `merge`,
    `stream` … — called as a statement without `await`.

    ## Why is this bad?
    Without `await` the coroutine is created and thrown away: nothing is executed,
    committed or closed, and the only trace is `RuntimeWarning: coroutine
    'AsyncSession.commit' was never awaited` in the logs. The code reads as if it
    worked.

    Only sessions known to be asynchronous are checked (opened with `async with`,
    built by an async factory, annotated `AsyncSession`, or awaited elsewhere in
    the same function): a synchronous `Session`'s methods are not awaited.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def rename(session: AsyncSession, user, name):
        user.name = name
        session.commit()
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def rename(session: AsyncSession, user, name):
        user.name = name
        await session.commit()
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): the call never runs, in a test
    helper or a migration as in a service.

    ## Fix safety
    The fix adds `await` when the call is inside an `async def`. It is safe: the
    call did nothing before.
    """

    code = "SL403"
    name = "unawaited-session-call"
    message = "`{call}()` on an AsyncSession is a coroutine: without `await` it never runs"
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = SESSION  # no session, no finding

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        # A session known to be async is opened with ``async with``, built by an
        # ``async_sessionmaker``, annotated ``AsyncSession``, or comes from a
        # configured factory; and the call is one of the coroutine methods.
        return ((*async_session_groups(config), tuple(sorted(COROUTINE_METHODS))),)

    def visit_Expr(self, node: cst.Expr) -> None:
        call = node.value
        if not (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Attribute)
            and call.func.attr.value in COROUTINE_METHODS
        ):
            return
        receiver = call.func.value
        if not (is_async_session(self.ctx, receiver) or self._awaited_elsewhere(receiver)):
            return
        fix = None
        if self.ctx.in_async_function:
            fix = Fix.replace(
                call,
                cst.Await(expression=call),
                Applicability.SAFE,
                description="add `await`",
            )
        name = f"{self.ctx.module.code_for_node(receiver)}.{call.func.attr.value}"
        self.report(call, self.message.format(call=name), fix=fix)

    def _awaited_elsewhere(self, receiver: cst.BaseExpression) -> bool:
        """An unannotated session parameter that this ``async def`` awaits methods of
        elsewhere is an AsyncSession."""
        function = self.ctx.function
        if (
            function is None
            or function.asynchronous is None
            or not isinstance(receiver, cst.Name)
            or receiver.value not in self.ctx.config.session_names
        ):
            return False
        bindings = self.ctx.scope.lookup(receiver.value)
        if not bindings or any(
            b.kind is not BindingKind.PARAM or b.annotation is not None for b in bindings
        ):
            return False
        for sub in iter_nodes(function.body):
            if (
                isinstance(sub, cst.Await)
                and isinstance(sub.expression, cst.Call)
                and isinstance(sub.expression.func, cst.Attribute)
                and isinstance(sub.expression.func.value, cst.Name)
                and sub.expression.func.value.value == receiver.value
            ):
                return True
        return False
