from __future__ import annotations

from collections import Counter

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.scopes import BindingKind
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.tasks import session_references

GATHER = frozenset({"asyncio.gather", "asyncio.tasks.gather"})
_COMPREHENSIONS = (cst.ListComp, cst.GeneratorExp, cst.SetComp)


class SessionSharedByGather(Rule):
    """
    ## What it does
    Finds one session used by several coroutines of one `asyncio.gather(...)`:
    passed to two of its arguments, or to a coroutine built in a comprehension
    (`asyncio.gather(*(load(session, i) for i in ids))`).

    ## Why is this bad?
    `gather` runs its coroutines concurrently, and an `AsyncSession` (like the
    connection under it) does one thing at a time. The second coroutine to reach
    the database fails with `sqlalchemy.exc.InvalidRequestError: This session is
    provisioning a new connection; concurrent operations are not permitted` — or,
    depending on timing, with asyncpg's `InterfaceError: cannot perform operation:
    another operation is in progress`. The failure depends on scheduling, so it
    tends to pass in tests and fail under load.

    Tasks in a `TaskGroup` that receive a session are reported by SL401
    (session-escapes-to-task).

    ## Example
    ```python
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession

    async def dashboard(session: AsyncSession, user_id):
        orders, invoices = await asyncio.gather(
            load_orders(session, user_id), load_invoices(session, user_id)
        )
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def dashboard(session: AsyncSession, user_id):
        orders = await load_orders(session, user_id)
        invoices = await load_invoices(session, user_id)
    ```

    Or give each coroutine its own session when the queries are slow enough for
    concurrency to matter.

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): concurrent operations on one
    session fail at run time (`InvalidRequestError`, asyncpg's `another operation is in
    progress`) wherever they are.
    """

    code = "SL402"
    name = "session-shared-by-gather"
    message = (
        "session `{session}` is used by several coroutines of one `asyncio.gather`: an "
        "AsyncSession does one operation at a time (`InvalidRequestError: This session is "
        "provisioning a new connection; concurrent operations are not permitted`); await them "
        "one after another or give each its own session"
    )
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("gather",)

    requires = (SESSION,)  # and a session

    def visit_Call(self, node: cst.Call) -> None:
        if not self.ctx.resolves_to(node.func, GATHER):
            return
        counts: Counter[str] = Counter()
        for arg in node.args:
            if arg.keyword is not None:
                continue
            if arg.star == "*":
                for element, repeated in self._elements(arg.value):
                    for key in self._sessions(element):
                        counts[key] += 2 if repeated else 1
            else:
                for key in self._sessions(arg.value):
                    counts[key] += 1
        for key, count in counts.items():
            if count > 1:
                self.report(node, self.message.format(session=key))

    def _sessions(self, expr: cst.CSTNode) -> set[str]:
        return {self.ctx.module.code_for_node(r) for r in session_references(self.ctx, expr)}

    def _elements(self, expr: cst.BaseExpression, depth: int = 0) -> list[tuple[cst.CSTNode, bool]]:
        """What ``*expr`` expands to: (coroutine expression, built repeatedly?)."""
        if isinstance(expr, _COMPREHENSIONS):
            return [(expr, True)]
        if isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
            return [(e.value, False) for e in expr.elements]
        if isinstance(expr, cst.Name) and depth == 0:
            bindings = self.ctx.scope.lookup(expr.value)
            if (
                len(bindings) == 1
                and bindings[0].kind is BindingKind.ASSIGNMENT
                and bindings[0].value is not None
            ):
                return self._elements(bindings[0].value, depth + 1)
        return []
