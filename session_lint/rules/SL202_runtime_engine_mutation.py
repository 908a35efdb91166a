from __future__ import annotations

import libcst as cst

from session_lint.finding import Applicability, Fix, FixAvailability, Import
from session_lint.fixes.edits import delete_statement
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.execution_options import Kind, classify
from session_lint.semantics.mappings import statement_of
from session_lint.semantics.sessions import is_engine

# Attributes that hold an engine: ``session.bind``, ``session.bind.engine``,
# ``async_engine.sync_engine``.
_ENGINE_ATTRIBUTES = frozenset({"bind", "engine", "sync_engine", "get_bind"})
_INEFFECTIVE = (Kind.DRIVER, Kind.ENGINE, Kind.INVENTED, Kind.NO_PARAMETERS)


class RuntimeEngineMutation(Rule):
    """
    ## What it does
    Finds `engine.update_execution_options(...)` outside the engine modules,
    including the roundabout forms `session.bind.update_execution_options(...)`,
    `session.bind.engine.update_execution_options(...)` and
    `engine.sync_engine.update_execution_options(...)`.

    ## Why is this bad?
    There is one engine per process, shared by every request and background task.
    `update_execution_options()` changes it in place, for every session and
    connection from then on, at whatever moment the calling code happens to run:
    a request handler or a task changes what all the others do. It is also where
    cargo-cult pooler settings end up: `update_execution_options(statement_cache_size=0)`
    or `no_parameters=True` look like a fix for
    `prepared statement "__asyncpg_stmt_5__" does not exist` and do nothing
    (measured behind pgbouncer in transaction mode: 59-66 % of transactions still
    fail); SQLAlchemy silently ignores those keys (see SL201).

    ## Known problems
    The receiver is recognised as an engine when it is built by
    `create_async_engine`/`create_engine` in this file, or is spelt as one
    (`engine`, `*_engine`, `.bind`, `.engine`, `.sync_engine`, `get_engine()`): an
    `ORMExecuteState.update_execution_options()` inside an event hook is not
    reported.

    ## Example
    ```python
    from app.db import engine

    async def nightly_report():
        engine.sync_engine.update_execution_options(statement_cache_size=0)
        ...
    ```

    Use instead:
    ```python
    from session_runtime import get_background_session

    async def nightly_report():
        async with get_background_session() as session:
            ...
    ```
    with the engine configured once, in the engine module (for a transaction
    pooler: `connect_args={"statement_cache_size": 0}`).

    ## Options
    - `engine-modules`: where engines may be configured.

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test or a script sets
    options on the engine it built for itself; only the app's engine is shared.
    `rule-roles` widens it (docs/roles.md).

    ## Fix safety
    When every key is one SQLAlchemy ignores, the call has no effect and the fix
    deletes the statement (a sole statement in a block becomes `pass`); that is
    safe, except that deleting `no_parameters=True` changes how the DBAPI
    `cursor.execute` is called, so then the fix is unsafe. Calls that set real
    options are reported without a fix: moving them to the engine module is a
    decision about every session.
    """

    code = "SL202"
    name = "runtime-engine-mutation"
    message = (
        "`update_execution_options()` outside the engine module mutates the shared "
        "engine: every session and connection in the process gets these options from "
        "now on; set options once where the engine is built, or per statement"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("update_execution_options",)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if (
            self.ctx.is_engine_module
            or not isinstance(func, cst.Attribute)
            or func.attr.value != "update_execution_options"
            or not self._is_engine(func.value)
        ):
            return
        keys = [a.keyword.value for a in node.args if a.keyword is not None]
        plain = bool(keys) and len(keys) == len(node.args)
        extra = self.ctx.config.extra_execution_options
        verdicts = [classify(k, extra) for k in keys]
        ineffective = plain and all(v is not None and v.kind in _INEFFECTIVE for v in verdicts)
        message = self.message
        fix: Fix | None = None
        if ineffective:
            listed = ", ".join(f"`{k}`" for k in keys)
            message += (
                f"; here it sets only keys that do nothing as execution options ({listed}): "
                "behind a pooler the setting that works is "
                '`connect_args={"statement_cache_size": 0}` on the engine'
            )
            where = statement_of(self.ctx.ancestor_chain(), node)
            edits = delete_statement(*where) if where is not None else None
            if edits is not None:
                unsafe = any(v is not None and v.kind is Kind.NO_PARAMETERS for v in verdicts)
                fix = Fix(
                    Applicability.UNSAFE if unsafe else Applicability.SAFE,
                    edits,
                    description="delete the call that has no effect",
                )
        self.report(node, message, fix=fix)

    def _is_engine(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Call):
            called = expr.func.attr.value if isinstance(expr.func, cst.Attribute) else None
            if isinstance(expr.func, cst.Name):
                called = expr.func.value
            if called is not None and (called == "get_bind" or _spelt_engine(called)):
                return True  # ``session.get_bind()``, ``get_engine()``, ``make_engine()``
            target = Import.from_target(self.ctx.config.engine_factory)
            return self.ctx.resolves_to(expr.func, frozenset({f"{target.module}.{target.name}"}))
        if is_engine(self.ctx, expr):
            return True
        if isinstance(expr, cst.Attribute):
            name = expr.attr.value
            return name in _ENGINE_ATTRIBUTES or _spelt_engine(name)
        if isinstance(expr, cst.Name):
            return _spelt_engine(expr.value)
        return False


def _spelt_engine(name: str) -> bool:
    """``engine``, ``read_engine``, ``ENGINE``; not the class ``Engine`` (calling
    ``Engine.update_execution_options(self, ...)`` is an implementation, not a use)."""
    if name.isupper():
        name = name.lower()
    return name == "engine" or name.endswith("_engine")
