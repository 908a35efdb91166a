from __future__ import annotations

import libcst as cst

from session_lint.known import RAW_DRIVER_CONNECTS
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule


class RawDriverConnection(Rule):
    """
    ## What it does
    Finds connections and pools opened with the database driver directly —
    `asyncpg.connect(...)`, `asyncpg.create_pool(...)`, `psycopg2.connect(...)`,
    `psycopg.connect(...)`, `psycopg.AsyncConnection.connect(...)`,
    `psycopg_pool.ConnectionPool(...)` — outside the engine modules (`engine.py`,
    `session.py`, `database.py`, `db.py`, `async_session.py`, a `db/` or `session/`
    package; configurable with `engine-modules`).

    ## Why is this bad?
    A raw connection bypasses the app's engine: its pool limits, its connect
    timeout and the settings a transaction pooler needs. asyncpg's defaults behind
    pgbouncer in transaction mode fail with `InvalidSQLStatementNameError: prepared
    statement "__asyncpg_stmt_1__" does not exist`; every raw pool is one more set
    of server connections counted against the pooler's limit; and nothing resets or
    closes the connection when the code forgets to.

    ## Known problems
    A connection that listens for notifications (`add_listener`, `LISTEN`) is
    not reported: it must stay open outside any pool, and no engine gives one.

    ## Example
    ```python
    import asyncpg

    async def count_users(dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM users")
        finally:
            await conn.close()
    ```

    Use instead:
    ```python
    from sqlalchemy import text
    from session_runtime import get_session

    async def count_users() -> int:
        async with get_session() as session:
            return await session.scalar(text("SELECT count(*) FROM users"))
    ```

    When driver-level access is really needed, get it through the engine
    (`await conn.get_raw_connection()`) or keep it in an engine module.

    ## Options
    - `engine-modules`

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: tests, migrations and
    scripts talk to the database directly on purpose (fixtures, bulk loads, checks).
    `rule-roles` widens it (docs/roles.md).
    """

    code = "SL104"
    name = "raw-driver-connection"
    message = (
        "database driver connection opened directly: it bypasses the app's engine, pool and "
        "pooler settings (asyncpg's defaults behind a transaction pooler fail with "
        '`prepared statement "__asyncpg_stmt_1__" does not exist`); use a session or a '
        "connection from the engine"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("asyncpg", "psycopg")
    # The trigger is an import of a driver's connect function: evidence enough.
    needs_evidence = False

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.is_engine_module or not self.ctx.resolves_to(node.func, RAW_DRIVER_CONNECTS):
            return
        if self._listens():
            return
        self.report(node)

    def _listens(self) -> bool:
        """The enclosing function listens for notifications (``add_listener``,
        ``LISTEN``): that needs a dedicated connection held outside any pool, which
        an engine cannot give, and which a transaction pooler cannot carry."""
        function = self.ctx.function
        if function is None or not (
            self.ctx.may_mention("add_listener") or self.ctx.may_mention("LISTEN")
        ):
            return False
        code = self.ctx.module.code_for_node(function)
        return "add_listener(" in code or "LISTEN " in code
