from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SQLALCHEMY_IMPORT
from session_lint.finding import Applicability, Fix, FixAvailability, Import
from session_lint.known import (
    ASYNC_ENGINE_CONSTRUCTORS,
    ENGINE_CONSTRUCTORS,
    SESSIONMAKERS,
)
from session_lint.project.dependencies import unimportable_hint
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule

# Keywords make_engine() hands to create_async_engine() unchanged. Anything else
# (connect_args, poolclass, execution_options, **kwargs…) is merged, checked or
# refused by make_engine, so a rewrite could change behaviour or raise: no fix.
PASSTHROUGH_KEYWORDS = frozenset(
    {
        "echo",
        "echo_pool",
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "pool_recycle",
        "pool_pre_ping",
        "pool_use_lifo",
        "hide_parameters",
        "logging_name",
    }
)


class StrayEngine(Rule):
    """
    ## What it does
    Finds engines and session factories — `create_async_engine(...)`,
    `create_engine(...)`, `async_sessionmaker(...)`, `sessionmaker(...)` — created
    outside the engine modules (`engine.py`, `session.py`, `database.py`, `db.py`,
    `async_session.py`, a `db/` or `session/` package; configurable with
    `engine-modules`).

    ## Why is this bad?
    Every engine has its own pool and its own settings. An engine created next to
    the code that uses it rarely carries the settings a transaction pooler needs:
    with the defaults, asyncpg behind pgbouncer in transaction mode fails most
    transactions with `InvalidSQLStatementNameError: prepared statement
    "__asyncpg_stmt_5__" does not exist`, and with two processes some queries
    silently return another process's result. Each extra engine also opens its own
    pool of connections against the pooler's limit. Creating engines and session
    factories in one module keeps one pool and one set of settings to get right.

    A `sessionmaker(...)()` called on the spot is reported by SL101
    (direct-session) instead.

    ## Known problems
    Whether a second engine or session factory is a mistake depends on the
    application's design, which one file does not show. On the pinned corpus of
    real packages (`docs/corpus.md`) every finding was deliberate: a separate,
    bounded pool for advisory locks, a synchronous engine for migrations or a
    data copy, a library's setup function building a factory from the engine
    its user passes in. The rule therefore runs only when selected by its full
    code (`extend-select = ["SL102"]`), for applications that keep one engine
    module and want every other engine reported.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("postgresql+asyncpg://app@db:6543/app", pool_size=5)
    ```

    Use instead:
    ```python
    from session_runtime import make_engine

    engine = make_engine("postgresql+asyncpg://app@db:6543/app", pool_size=5)
    ```

    Or import the engine (or session factory) from the engine module.

    ## Options
    - `engine-modules`
    - `engine-factory`

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test builds a per-test
    engine, Alembic's `env.py` builds its own (`engine_from_config(...,
    poolclass=NullPool)`), and a script builds one for its run. `rule-roles` widens it
    (docs/roles.md).

    ## Fix safety
    The fix rewrites `name = create_async_engine(url, ...)` at module level to
    `name = make_engine(url, ...)` and imports the configured `engine-factory`.
    It is unsafe: the factory adds pooler settings, a connect timeout and its own
    pool class, which changes how the engine behaves. It is offered only when every
    keyword is one the factory passes through unchanged (`echo`, `pool_size`,
    `max_overflow`, `pool_timeout`, `pool_recycle`, `pool_pre_ping`, …) and the
    factory's name is free in the module and the project can import the factory's
    module (one of its own modules or a declared dependency; otherwise the message
    says to set `engine-factory`). Engines created elsewhere, synchronous engines
    and session factories are not fixed.
    """

    code = "SL102"
    name = "stray-engine"
    message = (
        "engine created outside the engine modules: it has its own pool and settings "
        "(behind a transaction pooler, asyncpg's defaults fail with "
        '`prepared statement "__asyncpg_stmt_1__" does not exist`); create it once in an '
        "engine module, e.g. with `{factory}(url)`"
    )
    factory_message = (
        "session factory created outside the engine modules: each one carries its own "
        "engine and options; create it once in an engine module and import it"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("create_engine", "create_async_engine", "sessionmaker")
    # Whether a second engine is a mistake is the application's design: see
    # "Known problems".
    opt_in = True
    requires = (SQLALCHEMY_IMPORT,)  # the names resolve only through such an import

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.is_engine_module:
            return
        names = self.ctx.qualified_names(node.func)
        if not names.isdisjoint(SESSIONMAKERS):
            parent = self.ctx.parent
            if isinstance(parent, cst.Call) and parent.func is node:
                return  # ``sessionmaker(...)()`` builds a session: SL101 reports it
            self.report(node, self.factory_message)
            return
        if names.isdisjoint(ENGINE_CONSTRUCTORS):
            return
        factory = Import.from_target(self.ctx.config.engine_factory)
        message = self.message.format(factory=factory.name)
        fix = None
        if not names.isdisjoint(ASYNC_ENGINE_CONSTRUCTORS) and self._fixable_place(node):
            if self.ctx.project_can_import(factory.module):
                fix = self._fix(node, factory)
            else:
                message += unimportable_hint(factory.module, "engine-factory")
        self.report(node, message, fix=fix)

    def _fixable_place(self, node: cst.Call) -> bool:
        """``name = <node>`` at module level, with keywords the factory passes through."""
        ancestors = self.ctx.ancestor_chain()
        if len(ancestors) < 3:
            return False
        assignment, line, module = ancestors[-1], ancestors[-2], ancestors[-3]
        if not (isinstance(line, cst.SimpleStatementLine) and isinstance(module, cst.Module)):
            return False
        if isinstance(assignment, cst.Assign):
            if len(assignment.targets) != 1 or not isinstance(
                assignment.targets[0].target, cst.Name
            ):
                return False
        elif not (
            isinstance(assignment, cst.AnnAssign) and isinstance(assignment.target, cst.Name)
        ):
            return False
        return assignment.value is node and _passes_through(node)

    def _fix(self, node: cst.Call, factory: Import) -> Fix | None:
        assert factory.name is not None
        if not self.ctx.can_import(factory):
            return None
        return Fix.replace(
            node,
            node.with_changes(func=cst.Name(factory.name)),
            Applicability.UNSAFE,
            imports=(factory,),
            description=f"create the engine with `{factory.name}()`",
        )


def _passes_through(call: cst.Call) -> bool:
    """One URL (positional or ``url=``) and only keywords the factory passes through."""
    urls = 0
    for arg in call.args:
        if arg.star:
            return False
        if arg.keyword is None:
            urls += 1
        elif arg.keyword.value == "url":
            urls += 1
        elif arg.keyword.value not in PASSTHROUGH_KEYWORDS:
            return False
    return urls == 1
