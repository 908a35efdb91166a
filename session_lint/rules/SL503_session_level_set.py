from __future__ import annotations

import re

import libcst as cst

from session_lint.core.prefilter import SQLALCHEMY_IMPORT, Clause
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.known import DRIVER_SQL_METHODS, sql_head
from session_lint.project.config import Config
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.sql import (
    first_positional,
    is_text_call,
    string_argument,
)
from session_lint.semantics.transactions import in_transaction

# ``SET [SESSION] name ...``, ``SET ROLE``, ``SET SESSION AUTHORIZATION`` … all outlive
# the transaction. ``SET LOCAL``, ``SET TRANSACTION`` and ``SET CONSTRAINTS`` end with it.
_SESSION_SET = re.compile(
    r"^SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)(?P<session>SESSION\s+)?(?P<rest>\S)",
    re.I,
)
LISTENS_FOR = frozenset({"sqlalchemy.event.listens_for", "sqlalchemy.event.api.listens_for"})
# Pool/engine events where per-connection setup is the point (without a pooler).
_CONNECTION_EVENTS = frozenset({"connect", "first_connect", "engine_connect", "checkout"})
_CHARACTERISTICS = re.compile(r"^SET\s+SESSION\s+CHARACTERISTICS\b", re.I)
_SET_CONFIG_SESSION = re.compile(r"\bset_config\s*\((?:[^()]|\([^()]*\))*?,\s*false\s*\)", re.I)


class SessionLevelSet(Rule):
    """
    ## What it does
    Finds session-level settings sent through SQLAlchemy — `SET name = value`,
    `SET SESSION …`, `SET ROLE …`, `set_config(name, value, false)` — in `text(...)`
    or `exec_driver_sql(...)`. `SET LOCAL`, `SET TRANSACTION` and `SET CONSTRAINTS`
    are not reported: they end with the transaction.

    ## Why is this bad?
    A session-level setting stays on the database connection after the session is
    done with it. SQLAlchemy's pool resets a returned connection with `ROLLBACK`,
    not `DISCARD ALL`, so the next checkout — another request, another tenant —
    runs with this request's `search_path`, role or `statement_timeout`. Behind a
    transaction pooler (pgbouncer, Supavisor) it is worse: server connections are
    shared between clients transaction by transaction, so the setting leaks into
    other clients' transactions, and this client's next transaction may run on a
    server connection that never saw it. Reproduced with pgbouncer in transaction
    mode: a `SET application_name` from one client was visible to another.

    Settings made in a `@event.listens_for(engine, "connect")` (or
    `"engine_connect"`, `"checkout"`) handler are per-connection setup on purpose
    and are reported only when `pooler = "transaction"`: behind a transaction pooler
    the next transaction may run on a server connection that never saw them.

    `SET LOCAL` (or `set_config(name, value, true)`) lasts until the end of the
    current transaction, which is exactly what a pooler keeps on one server
    connection.

    ## Example
    ```python
    from sqlalchemy import text

    async def as_tenant(session, tenant):
        async with session.begin():
            await session.execute(text("SET search_path TO tenant_a"))
            return await session.scalars(text("SELECT * FROM invoices"))
    ```

    Use instead:
    ```python
    from sqlalchemy import text

    async def as_tenant(session, tenant):
        async with session.begin():
            await session.execute(text("SET LOCAL search_path TO tenant_a"))
            return await session.scalars(text("SELECT * FROM invoices"))
    ```

    ## Options
    - `pooler`

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a migration or a script
    sets `search_path` or `statement_timeout` for its own connection on purpose; a
    leaked `SET` poisons the app's pooled server connections. `rule-roles` widens it
    (docs/roles.md).

    ## Fix safety
    The fix turns `SET` (or `SET SESSION`) into `SET LOCAL`, and `set_config(…,
    false)` into `set_config(…, true)`. It is offered only when the statement runs
    inside a transaction block (`async with session.begin():`, `async with
    engine.begin() as conn:` …) in the same function, and only for a literal
    holding one statement, written in the call itself. It is unsafe: code later in the same session that relied
    on the setting outliving the transaction no longer sees it. `SET SESSION
    CHARACTERISTICS` has no `LOCAL` form (use `SET TRANSACTION` inside the
    transaction) and is not fixed.
    """

    code = "SL503"
    name = "session-level-set"
    message = (
        "session-level `SET` outlives the transaction: the pool resets connections with "
        "ROLLBACK, not DISCARD, and a transaction pooler hands the setting to other clients; "
        "use `SET LOCAL` inside a transaction"
    )
    config_message = (
        "`set_config(…, false)` sets the value for the whole connection: the pool resets "
        "connections with ROLLBACK, not DISCARD, and a transaction pooler hands the setting "
        "to other clients; pass `true` (transaction-local) inside a transaction"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("text", "exec_driver_sql")

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        return ((("text",), SQLALCHEMY_IMPORT), (("exec_driver_sql",),))

    def visit_Call(self, node: cst.Call) -> None:
        if not is_text_call(self.ctx, node) and not (
            isinstance(node.func, cst.Attribute) and node.func.attr.value in DRIVER_SQL_METHODS
        ):
            return
        arg = first_positional(node)
        if arg is None:
            return
        found = string_argument(self.ctx, arg.value)
        if found is None:
            return
        value, literal = found
        if self._in_connection_setup():
            return
        # A shared constant is not rewritten: changing it would change every use.
        own = literal if literal is arg.value else None
        head = sql_head(value)
        if _SESSION_SET.match(head):
            self.report(arg.value, fix=self._fix(own, value, characteristics=head))
        elif _SET_CONFIG_SESSION.search(value):
            self.report(arg.value, self.config_message, fix=self._fix(own, value))

    def _in_connection_setup(self) -> bool:
        """A ``@event.listens_for(engine, "connect")`` handler sets up each new connection
        on purpose; that is only wrong behind a transaction pooler, where the next
        transaction may run on a server connection that never saw it."""
        if self.ctx.config.pooler == "transaction":
            return False
        function = self.ctx.function
        if function is None:
            return False
        for decorator in function.decorators:
            expr = decorator.decorator
            if (
                isinstance(expr, cst.Call)
                and self._is_listens_for(expr.func)
                and len(expr.args) > 1
                and isinstance(expr.args[1].value, cst.SimpleString)
                and expr.args[1].value.evaluated_value in _CONNECTION_EVENTS
            ):
                return True
        return False

    def _is_listens_for(self, func: cst.BaseExpression) -> bool:
        names = self.ctx.qualified_names(func)
        # SQLAlchemy's own modules import it relatively (``from .. import event``).
        return not names.isdisjoint(LISTENS_FOR) or any(
            n.startswith(".") and n.endswith("event.listens_for") for n in names
        )

    def _fix(
        self, literal: cst.BaseExpression | None, value: str, characteristics: str | None = None
    ) -> Fix | None:
        if not isinstance(literal, cst.SimpleString) or not in_transaction(self.ctx):
            return None
        if characteristics is not None and _CHARACTERISTICS.match(characteristics):
            return None
        if ";" in value.rstrip().rstrip(";"):
            return None  # several statements: which ones to change is not ours to guess
        raw = literal.value
        prefix_len = len(literal.prefix) + len(literal.quote)
        body = raw[prefix_len : len(raw) - len(literal.quote)]
        if characteristics is not None:
            new_body = re.sub(
                r"^(\s*)SET\s+(?:SESSION\s+)?",
                lambda m: (
                    f"{m.group(1)}{'SET' if body.lstrip().startswith('SET') else 'set'} "
                    + ("LOCAL " if body.lstrip().startswith("SET") else "local ")
                ),
                body,
                count=1,
                flags=re.I,
            )
        else:
            new_body = re.sub(r"(,\s*)false(\s*\))", r"\1true\2", body, count=1, flags=re.I)
        if new_body == body:
            return None
        new = literal.with_changes(value=raw[:prefix_len] + new_body + literal.quote)
        return Fix.replace(literal, new, Applicability.UNSAFE, description="use `SET LOCAL`")
