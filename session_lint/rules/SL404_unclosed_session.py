from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.walker import subtree
from session_lint.known import SESSION_CLASSES
from session_lint.project.effects import STATEMENT_METHODS
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.ownership import NameUse, is_test_code, name_uses
from session_lint.semantics.sessions import (
    is_project_session_factory,
    is_session_factory,
)

_ENDS = frozenset({"commit", "rollback", "close", "aclose", "invalidate", "expunge_all"})


class UnclosedSession(Rule):
    """
    ## What it does
    Finds a session built from a session factory or class and bound to a name —
    `session = SessionLocal()`, `session = AsyncSession(engine)` — that runs a
    statement (`execute`, `get`, `scalar(s)`, `flush`, `refresh`…) and that the
    function never commits, rolls back or closes, nor hands on (returns, yields,
    stores or passes to a call): `session = factory(); return await
    session.get(Order, order_id)`. That session always leaks.

    Selected by its full code (`extend-select = ["SL404"]`), it also finds the
    sessions that are not closed on *every* path: neither used with `async with`
    nor closed in a `finally` block.

    ## Why is this bad?
    A session holds a pooled connection from its first query until it is closed. If
    an exception (or an early `return`) skips `close()`, the connection stays checked
    out until the garbage collector finds the session; SQLAlchemy then logs `The
    garbage collector is trying to clean up non-checked-in connection …, which will
    be terminated`. Until then the pool is one connection short; under errors it
    runs dry and every request waits `pool_timeout` seconds, then fails with
    `QueuePool limit of size 5 overflow 10 reached, connection timed out`.

    A session that is returned, stored, or passed to other code is theirs to close
    and is not reported; a session that is yielded from a FastAPI dependency must be
    closed in `finally` around the `yield` (FastAPI throws the endpoint's exception
    in at the `yield`). A pytest fixture may close it after the `yield`: pytest runs
    the teardown even when the test fails.

    ## Known problems
    A session ends its transaction, and gives its connection back to the pool,
    when the transaction ends: after `commit()` or `rollback()`, and at the end of
    `async with session.begin():`. So a session that is not closed only holds a
    connection while a transaction it began is open, which the rule cannot follow
    through the code. The first measurement on real projects found 144 reports and
    no leak; on the pinned corpus (`docs/corpus.md`) the reports were examples,
    tests and sessions whose transactions all ended. By default the rule therefore
    reports only the form that always leaks: a statement ran (so a transaction and
    a pooled connection were taken) and nothing in the function ever ends the
    transaction. The every-path form runs only when selected by its full code
    (`extend-select = ["SL404"]`). A session built without an engine (`Session()`,
    no `bind`) is never reported: it never checks a connection out.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import async_sessionmaker

    factory = async_sessionmaker(expire_on_commit=False)

    async def count_users():
        session = factory()
        result = await session.scalar(text("SELECT count(*) FROM users"))
        await session.close()
        return result
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import async_sessionmaker

    factory = async_sessionmaker(expire_on_commit=False)

    async def count_users():
        async with factory() as session:
            return await session.scalar(text("SELECT count(*) FROM users"))
    ```

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test fixture's or a
    script's session lives as long as its test or its run, and the process ends with it.
    `rule-roles` widens it (docs/roles.md).
    """

    code = "SL404"
    name = "unclosed-session"
    message = (
        "session `{name}` is not closed on every path: its connection stays checked out until "
        "garbage collection (`The garbage collector is trying to clean up non-checked-in "
        "connection`); open it with `async with` or close it in `finally`"
    )
    leak_message = (
        "session `{name}` runs `{name}.{method}()` and nothing ever commits, rolls back or "
        "closes it, nor hands it on: its pooled connection stays checked out, idle in "
        "transaction, until garbage collection (`The garbage collector is trying to clean "
        "up non-checked-in connection`); open it with `async with`"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = SESSION  # the configured factories' names included

    @property
    def _every_path(self) -> bool:
        """The full form (every path, exceptions included) runs only when selected
        by its full code; see "Known problems"."""
        return self.ctx.config.is_enabled(self.code, opt_in=True)

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1:
            self._check(node.targets[0].target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._check(node.target, node.value)

    def _check(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        function = self.ctx.function
        if function is None or not isinstance(target, cst.Name):
            return
        if not isinstance(value, cst.Call) or not self._makes_session(value):
            return
        if self._unbound(value):
            return  # ``Session()`` with no engine never holds a connection
        uses = name_uses(function, target.value)
        if NameUse.ESCAPES in uses or NameUse.CLOSED in uses:
            return
        if not self._every_path:
            method = self._leaks(function, target.value)
            if method is not None and NameUse.CLOSE_CALLED not in uses:
                self.report(value, self.leak_message.format(name=target.value, method=method))
            return
        if NameUse.CLOSE_CALLED in uses and self._is_fixture(function):
            return  # pytest runs a fixture's teardown even when the test fails
        self.report(value, self.message.format(name=target.value))

    @staticmethod
    def _leaks(function: cst.FunctionDef, name: str) -> str | None:
        """The statement method run on ``name`` when the function runs one and never
        commits, rolls back or closes it (the always-leaking form)."""
        ran: str | None = None
        for node in subtree(function.body):
            if (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and isinstance(node.func.value, cst.Name)
                and node.func.value.value == name
            ):
                method = node.func.attr.value
                if method in _ENDS:
                    return None
                if ran is None and method in STATEMENT_METHODS:
                    ran = method
        return ran

    def _is_fixture(self, function: cst.FunctionDef) -> bool:
        parent = self.ctx.scope.parent
        return (
            parent is not None
            and not function.name.value.startswith("test_")
            and is_test_code(self.ctx, function, parent)
        )

    def _unbound(self, call: cst.Call) -> bool:
        """``Session()``/``AsyncSession()`` without an engine (no positional argument,
        no ``bind=``): a scratch session that never checks a connection out."""
        return self.ctx.resolves_to(call.func, SESSION_CLASSES) and not any(
            arg.keyword is None or arg.keyword.value == "bind" for arg in call.args
        )

    def _makes_session(self, call: cst.Call) -> bool:
        if self.ctx.resolves_to(call.func, SESSION_CLASSES):
            return True
        return is_session_factory(self.ctx, call.func) or is_project_session_factory(self.ctx, call)
