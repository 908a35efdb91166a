from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import Clause, clauses
from session_lint.project.config import Config
from session_lint.project.dependencies import asyncpg_too_old_for_pooler, describe_cap, version_cap
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.pooler import (
    is_async_engine_call,
    pooler_expected,
    pooler_ruled_out,
    url_argument,
    url_text,
)

_MESSAGE = (
    "asyncpg is capped {cap} in this project: before 0.32, `statement_cache_size=0` "
    "still fails under a transaction pooler (measured through pgbouncer: ~65 % of "
    'transactions on 0.27-0.30, `prepared statement "__asyncpg_stmt_…__" does not '
    "exist`); upgrade asyncpg to 0.32 or later"
)


class AsyncpgTooOldForPooler(Rule):
    """
    ## What it does
    Finds an asyncpg engine that will meet a transaction pooler in a project that
    keeps asyncpg below 0.32.

    The engine is a `create_async_engine` call with a `postgresql+asyncpg` URL; the
    pooler is pgbouncer in `pool_mode=transaction` or Supabase Supavisor on port
    6543, detected as for SL204. The version comes from the project's dependency
    files: a `==`, `<`, `<=` or `~=` requirement, a Poetry `^`/`~` constraint, or
    the exact version in `uv.lock` / `poetry.lock`.

    ## Why is this bad?
    `connect_args={"statement_cache_size": 0}` (SL204) makes asyncpg pooler-safe
    only from 0.32 on. Before 0.31, asyncpg gives a name to every statement that
    SQLAlchemy prepares, whatever the cache size, so a pooler that hands the next
    transaction to another server connection leaves the statement behind:
    `asyncpg.exceptions.InvalidSQLStatementNameError: prepared statement
    "__asyncpg_stmt_5__" does not exist`. Measured through pgbouncer 1.18 in
    transaction mode, with the cache disabled: ~65 % of transactions fail on
    asyncpg 0.27-0.30 (0 % on 0.32). 0.31 sends such statements unnamed, but
    breaks streaming over ENUM columns (`invalid byte sequence for encoding
    "UTF8": 0x00`), fixed in 0.32. No engine setting makes an older asyncpg
    correct without a cost: the SQLAlchemy docs' unique-name recipe works, but
    leaks prepared statements on the server without bound (SL205).

    ## Known problems
    The cap is read from the project's dependency files (`pyproject.toml`,
    `setup.cfg`, `Pipfile`, `requirements*.txt`, `requirements/*.txt`, `uv.lock`,
    `poetry.lock`) at the project root; a pin that lives elsewhere (a constraints
    file, a Dockerfile) is not seen, and a project without a dependency file gets
    no finding.

    ## Example
    ```python
    # requires: asyncpg==0.29.0
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        connect_args={"statement_cache_size": 0},
    )
    ```

    Use instead:
    ```python
    # requires: asyncpg>=0.32
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        connect_args={"statement_cache_size": 0},
    )
    ```

    ## Options
    - `pooler`: `"session"` or `"none"` turns the rule off; `"transaction"` checks
      every asyncpg engine.

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): the asyncpg version is the
    project's, so every engine behind the pooler meets it: a migration's and a script's
    too.

    ## References
    - asyncpg 0.31 and 0.32 release notes
    - SQLAlchemy: "Prepared Statement Cache" in the asyncpg dialect docs
    """

    code = "SL207"
    name = "asyncpg-too-old-for-pooler"
    message = _MESSAGE.format(cap="below 0.32")
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("create_async_engine",)

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        # Without an old asyncpg in the project, no file can have a finding.
        if config.pooler in ("session", "none") or not asyncpg_too_old_for_pooler(config.project):
            return ()
        return clauses(config, cls.tokens)

    def visit_Call(self, node: cst.Call) -> None:
        if pooler_ruled_out(self.ctx) or not asyncpg_too_old_for_pooler(self.ctx.config.project):
            return
        if not is_async_engine_call(self.ctx, node):
            return
        url = url_argument(node)
        if url is not None and url_text(self.ctx, url).is_asyncpg is False:
            return  # another driver (psycopg, aiosqlite…)
        if not pooler_expected(self.ctx, node):
            return
        cap = version_cap(self.ctx.config.project, "asyncpg")
        assert cap is not None
        self.report(node, _MESSAGE.format(cap=describe_cap(cap)))
