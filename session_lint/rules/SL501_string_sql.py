from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION_OR_CONNECTION
from session_lint.core.scopes import BindingKind
from session_lint.finding import Applicability, Fix, FixAvailability, Import
from session_lint.known import EXECUTE_METHODS, TEXT_FUNCTIONS
from session_lint.project.dependencies import unimportable_hint
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.sql import (
    executes_sql,
    first_positional,
    string_argument,
)

_TEXT = Import("sqlalchemy", "text")


class StringSql(Rule):
    """
    ## What it does
    Finds a plain string passed as the statement to `execute()` (or `scalar()`,
    `scalars()`, `stream()`) of a SQLAlchemy session or connection:
    `await session.execute("SELECT 1")`.

    ## Why is this bad?
    SQLAlchemy 2.x does not accept strings as statements. The call raises
    `sqlalchemy.exc.ArgumentError: Textual SQL expression 'SELECT 1' should be
    explicitly declared as text('SELECT 1')` — at runtime, on the first request
    that reaches the line. `text()` also gives the statement bound parameters
    (`:name`), so values never need to be pasted into the SQL.

    `exec_driver_sql()` takes a string on purpose and is not reported; neither are
    DB-API cursors or asyncpg connections, whose `execute()` takes strings.

    ## Example
    ```python
    from session_runtime import get_session

    async def count_users():
        async with get_session() as session:
            return await session.scalar("SELECT count(*) FROM users")
    ```

    Use instead:
    ```python
    from sqlalchemy import text
    from session_runtime import get_session

    async def count_users():
        async with get_session() as session:
            return await session.scalar(text("SELECT count(*) FROM users"))
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): SQLAlchemy 2 refuses a plain
    string (`ObjectNotExecutableError`) wherever it is executed.

    ## Fix safety
    The fix wraps the string in `text(...)` and imports `text` from `sqlalchemy`.
    It is safe: the call could only raise before. It is not offered when the name
    `text` is already bound to something else in the file, nor when the project
    cannot import `sqlalchemy` (no such dependency declared, and no SQLAlchemy
    import in the file).
    """

    code = "SL501"
    name = "string-sql"
    message = (
        "plain string as SQL: SQLAlchemy 2.x raises `ArgumentError: Textual SQL expression "
        "... should be explicitly declared as text(...)`; wrap it in `text(...)`"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("execute", "scalar", "stream")

    requires = (SESSION_OR_CONNECTION,)  # and a session or a connection

    def visit_Call(self, node: cst.Call) -> None:
        if not executes_sql(self.ctx, node, EXECUTE_METHODS):
            return
        arg = first_positional(node)
        if arg is None:
            return
        found = string_argument(self.ctx, arg.value)
        if found is None:
            return
        fix = self._fix(arg.value)
        if fix is not None and fix.imports and not self.ctx.project_can_import(_TEXT.module):
            self.report(arg.value, self.message + unimportable_hint(_TEXT.module))
            return
        self.report(arg.value, fix=fix)

    def _fix(self, value: cst.BaseExpression) -> Fix | None:
        # ``text`` must end up meaning sqlalchemy.text wherever the call is.
        bindings = self.ctx.scope.lookup("text")
        if any(
            b.kind is not BindingKind.IMPORT or b.qualified_name not in TEXT_FUNCTIONS
            for b in bindings
        ):
            return None
        imports = () if bindings else (_TEXT,)
        if not bindings and self.ctx.scope.module.bindings.get("text"):
            return None
        call = cst.Call(func=cst.Name("text"), args=[cst.Arg(value)])
        return Fix.replace(
            value, call, Applicability.SAFE, imports=imports, description="wrap in `text(...)`"
        )
