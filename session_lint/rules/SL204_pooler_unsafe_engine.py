from __future__ import annotations

import libcst as cst

from session_lint.finding import Applicability, Fix, FixAvailability, Replacement
from session_lint.fixes.edits import dict_entry, with_entry, with_keyword
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.mappings import (
    has_star_kwargs,
    int_value,
    keyword,
    read_mapping,
    resolve_mapping,
)
from session_lint.semantics.pooler import (
    is_async_engine_call,
    pooler_expected,
    url_argument,
    url_text,
)

_MESSAGE = (
    "asyncpg engine behind a transaction pooler without "
    '`connect_args={{"statement_cache_size": 0}}`{detail}: asyncpg\'s prepared statements '
    "then land on whichever server connection the pooler picks (measured through pgbouncer: "
    '59-63 % of transactions fail with `prepared statement "__asyncpg_stmt_5__" does not '
    "exist`, and with two processes 24 % silently returned the other process's result). "
    'Set `connect_args={{"statement_cache_size": 0}}` (asyncpg >= 0.32), or build the '
    "engine with `session_runtime.make_engine()`"
)


class PoolerUnsafeEngine(Rule):
    """
    ## What it does
    Finds an asyncpg engine (`create_async_engine` with a `postgresql+asyncpg` URL)
    that will meet a transaction pooler (pgbouncer in `pool_mode=transaction`,
    Supabase Supavisor on port 6543) without
    `connect_args={"statement_cache_size": 0}`.

    ## Why is this bad?
    asyncpg prepares every statement on the server connection it runs on. A
    transaction pooler hands each transaction to whichever server connection is
    free, so the statement is missing, or another client's statement of the same
    name is there. Measured through pgbouncer 1.18 (transaction mode) with default
    settings: 59-63 % of transactions fail with
    `InvalidSQLStatementNameError: prepared statement "__asyncpg_stmt_5__" does not exist`;
    with two processes also `DuplicatePreparedStatementError` and, worst,
    24 % of transactions silently returned the other process's result.

    The correct engine configuration is exactly this, with asyncpg >= 0.32:

        create_async_engine(url, connect_args={"statement_cache_size": 0})

    Nothing else for prepared statements: with the cache off, asyncpg 0.31+ uses
    unnamed statements, which a transaction pooler handles (0 failures, 0 leaked
    statements, 0 wrong results with two processes). Not the
    `prepared_statement_name_func=lambda: f"__asyncpg_{uuid4()}__"` recipe: it leaks
    server-side prepared statements without bound and is ~30 % slower (SL205).
    Not `prepared_statement_cache_size=0` either: it costs an extra round trip
    per statement and adds nothing on 0.32. `statement_cache_size` in the URL
    query fails every query (SL206), in `server_settings` every connect (SL203),
    as an execution option it does nothing (SL201). asyncpg 0.27-0.30 fail ~65 %
    even with this setting: require `asyncpg>=0.32`.

    `session_runtime.make_engine(url)` builds this engine for you (it detects the
    pooler from the URL or `$DB_POOLER`), and `session-runtime doctor` checks a
    running database URL end to end.

    ## Known problems
    The pooler is expected when the `pooler` option is `"transaction"`, or a
    database URL literal in the call or the file shows one: port 6543, a
    `pooler.supabase.com` host, `pgbouncer=true` in the query. URLs built from
    literal parts (f-strings, `+`, module constants) are read as far as they are
    literal; a URL that is not literal at all counts as asyncpg only with such
    evidence. `connect_args` passed as a variable that is not a literal dict, or
    through `**kwargs`, is not checked.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    )
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        connect_args={"statement_cache_size": 0},
    )
    ```

    ## Options
    - `pooler`: `"transaction"` checks every asyncpg engine; `"session"` or
      `"none"` turns this rule's evidence off; `"auto"` (default) relies on the URLs.

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): a migration or a script run
    through the pooler fails with the same prepared-statement errors as the app.

    ## Fix safety
    The fix adds `"statement_cache_size": 0` to `connect_args` (creating the
    argument when there is none), or sets an existing non-zero value to 0. It is
    unsafe: it changes how every statement is sent (no client-side statement
    cache), which is the point, but is a behaviour change all the same.

    ## References
    - asyncpg: `connect(statement_cache_size=...)`, "Using pgbouncer" in the FAQ
    - SQLAlchemy: "Prepared Statement Cache" in the asyncpg dialect docs
    """

    code = "SL204"
    name = "pooler-unsafe-engine"
    message = _MESSAGE.format(detail="")
    fix_availability = FixAvailability.ALWAYS
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("create_async_engine",)

    def visit_Call(self, node: cst.Call) -> None:
        if not is_async_engine_call(self.ctx, node) or not self._pooler_expected(node):
            return
        url = url_argument(node)
        text = url_text(self.ctx, url) if url is not None else None
        if text is not None and any(
            k in ("statement_cache_size", "prepared_statement_cache_size") for k, _ in text.query()
        ):
            return  # SL206's finding; its fix moves the value into connect_args
        arg = keyword(node, "connect_args")
        if arg is None:
            if has_star_kwargs(node):
                return  # connect_args may come through **kwargs
            new = with_keyword(
                node,
                "connect_args",
                cst.Dict([dict_entry("statement_cache_size", cst.Integer("0"))]),
            )
            self._report(node, node, new, "")
            return
        mapping = resolve_mapping(self.ctx, arg.value)
        if mapping is None:
            return
        entry = mapping.get("statement_cache_size")
        if entry is not None:
            if int_value(entry.value) == 0:
                return
            if int_value(entry.value) is None:
                return  # a variable: cannot tell
            detail = f" (it is `{int_value(entry.value)}`)"
        else:
            if not mapping.complete:
                return
            settings = mapping.get("server_settings")
            inner = read_mapping(self.ctx, settings.value) if settings else None
            if inner is not None and inner.get("statement_cache_size") is not None:
                return  # SL203's finding; its fix moves the value up
            detail = ""
        new_mapping = with_entry(mapping, "statement_cache_size", cst.Integer("0"))
        self._report(node, mapping.node, new_mapping, detail)

    def _pooler_expected(self, node: cst.Call) -> bool:
        url = url_argument(node)
        if url is not None and url_text(self.ctx, url).is_asyncpg is False:
            return False
        return pooler_expected(self.ctx, node)

    def _report(self, node: cst.Call, target: cst.CSTNode, new: Replacement, detail: str) -> None:
        fix = Fix.replace(
            target,
            new,
            Applicability.UNSAFE,
            description='add connect_args={"statement_cache_size": 0}',
        )
        self.report(node, _MESSAGE.format(detail=detail), fix=fix)
