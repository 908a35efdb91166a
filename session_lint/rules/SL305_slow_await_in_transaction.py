from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION_OR_CONNECTION
from session_lint.core.scopes import BindingKind
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.transactions import enclosing_transactions


class SlowAwaitInTransaction(Rule):
    """
    ## What it does
    Finds a call to a known slow, non-database operation inside a transaction
    block (`async with session.begin():`, `async with factory.begin() as session:`,
    `async with engine.begin() as conn:`): `asyncio.sleep`, `time.sleep`, and HTTP
    requests on `httpx.AsyncClient` / `aiohttp.ClientSession` clients — the list in
    the `slow-calls` option, matched through imports and through the client a
    name was created from (`async with httpx.AsyncClient() as client:
    await client.get(...)`).

    ## Why is this bad?
    While the transaction is open it holds a database connection, its row locks
    and, behind a transaction pooler (pgbouncer, Supavisor), a server connection
    that no other client can use. An HTTP call of a few hundred milliseconds inside
    it multiplies the time each request pins a server connection; under load the
    pooler's few server connections run out and every client queues. A slow or
    hanging call also runs into PostgreSQL's `idle_in_transaction_session_timeout`
    (`FATAL: terminating connection due to idle-in-transaction timeout`), and the
    whole transaction is lost.

    Do the slow work before the transaction begins, or after it commits.

    ## Example
    ```python
    import httpx
    from sqlalchemy.ext.asyncio import AsyncSession

    async def charge(session: AsyncSession, order):
        async with httpx.AsyncClient() as client:
            async with session.begin():
                order.status = "charging"
                await client.post("https://payments.example/charge", json={"id": order.id})
                order.status = "charged"
    ```

    Use instead:
    ```python
    import httpx
    from sqlalchemy.ext.asyncio import AsyncSession

    async def charge(session: AsyncSession, order):
        async with httpx.AsyncClient() as client:
            await client.post("https://payments.example/charge", json={"id": order.id})
        async with session.begin():
            order.status = "charged"
    ```

    ## Options
    - `slow-calls`

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test or a script that
    waits inside a transaction holds one connection for its own run, not one of a pool
    that requests share. `rule-roles` widens it (docs/roles.md).
    """

    code = "SL305"
    name = "slow-await-in-transaction"
    message = (
        "`{call}` inside a transaction: the transaction, its locks and (behind a "
        "transaction pooler) a server connection stay held while it waits; move it before "
        "`async with ...begin():` or after the commit"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("begin",)  # nothing is slow outside a transaction block

    requires = (SESSION_OR_CONNECTION,)  # and a session or a connection

    def visit_Call(self, node: cst.Call) -> None:
        slow = self.ctx.config.slow_calls
        if not slow:
            return
        names = self._call_names(node.func)
        match = next((n for n in sorted(names) if n in slow), None)
        if match is None or not enclosing_transactions(self.ctx):
            return
        if match.endswith(".sleep") and _is_zero(node):
            return  # sleep(0) only yields to the event loop
        self.report(node, self.message.format(call=match))

    def _call_names(self, func: cst.BaseExpression) -> set[str]:
        """``asyncio.sleep`` for ``asyncio.sleep``, and ``httpx.AsyncClient.get`` for
        ``client.get`` when ``client`` was made by ``httpx.AsyncClient(...)`` (or is
        annotated as one)."""
        names = set(self.ctx.qualified_names(func))
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
            method = func.attr.value
            for b in self.ctx.scope.lookup(func.value.value):
                origin: cst.BaseExpression | None = None
                if b.kind in (BindingKind.WITH, BindingKind.ASSIGNMENT) and isinstance(
                    b.value, cst.Call
                ):
                    origin = b.value.func
                elif b.kind is BindingKind.PARAM:
                    origin = b.annotation
                if origin is not None:
                    names.update(f"{q}.{method}" for q in self.ctx.qualified_names(origin))
        return names


def _is_zero(call: cst.Call) -> bool:
    if not call.args:
        return False
    value = call.args[0].value
    return isinstance(value, (cst.Integer, cst.Float)) and float(value.value) == 0
