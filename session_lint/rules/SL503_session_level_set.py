from __future__ import annotations

import re

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.prefilter import SQLALCHEMY_IMPORT, Clause, Pattern
from session_lint.core.scopes import BindingKind
from session_lint.core.walker import subtree
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.known import DRIVER_SQL_METHODS, sql_head
from session_lint.project.config import Config
from session_lint.project.roles import APP_AND_MIGRATION, MIGRATION, role_of
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_session
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
_SQL_FUNC = frozenset({"sqlalchemy.func", "sqlalchemy.sql.func", "sqlalchemy.sql.expression.func"})
LISTENS_FOR = frozenset({"sqlalchemy.event.listens_for", "sqlalchemy.event.api.listens_for"})
# Pool/engine events where per-connection setup is the point (without a pooler).
_CONNECTION_EVENTS = frozenset({"connect", "first_connect", "engine_connect", "checkout"})
_CHARACTERISTICS = re.compile(r"^SET\s+SESSION\s+CHARACTERISTICS\b", re.I)
_SET_CONFIG_SESSION = re.compile(r"\bset_config\s*\((?:[^()]|\([^()]*\))*?,\s*false\s*\)", re.I)
# Session-level advisory locks (the ``_xact_`` forms end with the transaction).
_ADVISORY_LOCK = re.compile(r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.I)
_ADVISORY_FUNCTIONS = frozenset(
    {"pg_advisory_lock", "pg_try_advisory_lock", "pg_advisory_lock_shared",
     "pg_try_advisory_lock_shared"}
)  # fmt: skip
# What the SQL of a finding holds, in any case and however the string is written:
# ``SET`` followed by white space, an escape (``"SET\\tx"``) or a quote (``"SET" " x"``);
# ``set_config``; an advisory lock. ``text`` alone is in most files, and ``set(``
# is Python's. (Asking for a word boundary before ``SET`` costs three times more.)
_SQL_WORDS = (Pattern(r"(?i:set[\s\\\"']|set_config|advisory_lock)"),)
# An Alembic env.py that runs on a connection the application hands it.
_SHARED_CONNECTION = re.compile(rb"""attributes(?:\.get\(\s*|\[\s*)["']connection["']""")


class SessionLevelSet(Rule):
    """
    ## What it does
    Finds session-level settings sent through SQLAlchemy — `SET name = value`,
    `SET SESSION …`, `SET ROLE …`, `set_config(name, value, false)` — in `text(...)`
    or `exec_driver_sql(...)`. `SET LOCAL`, `SET TRANSACTION` and `SET CONSTRAINTS`
    are not reported: they end with the transaction.

    Also session-level advisory locks — `pg_advisory_lock(...)`,
    `pg_try_advisory_lock(...)` (and their `_shared` forms), in `text()` or as
    `func.pg_advisory_lock(...)` — through a pooled session or connection. The
    `_xact_` forms are not reported: they end with the transaction.

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

    An advisory lock taken with `pg_advisory_lock` belongs to the server
    connection, not to the transaction: `commit()` returns the connection to the
    pool still holding the lock, and every caller of the blocking form waits until
    that connection is recycled; the unlock may run on another connection and
    return false (`WARNING: you don't own a lock of type ExclusiveLock`); behind a
    transaction pooler lock and unlock reach different server connections
    (pgbouncer lists session-level advisory locks among what transaction pooling
    breaks). `pg_advisory_xact_lock` is released when the transaction ends.
    Silent: a lock on a dedicated connection — the function builds its engine or
    uses `NullPool`, or opens the connection itself and unlocks in `finally` — and
    a lock context manager (`@asynccontextmanager`) that unlocks in `finally` on
    the connection it was given, whose callers choose the connection (neither
    behind a transaction pooler); a lock on a connection the function receives as
    a parameter that is not a session (its caller chose the connection).

    In an Alembic `env.py` that runs on a connection the application hands it
    (`config.attributes["connection"]`, the connection-sharing recipe), a `SET`
    outlives the migration in the application's pool: one pooled connection keeps
    the migration's `lock_timeout` for the life of the process.

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
    `app` files, and the `migration` files that run on the application's own
    connection (an `env.py` reading `config.attributes["connection"]`); not `test`
    or `script` ones, nor a migration with its own connection: a migration or a
    script sets `search_path` or `statement_timeout` for its own connection on
    purpose; a leaked `SET` poisons the app's pooled server connections.
    `rule-roles` widens it (docs/roles.md).

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
    lock_message = (
        "session-level advisory lock `{name}` through a pooled connection: the lock belongs "
        "to the server connection, not the transaction, so it survives `commit()` and goes "
        "back to the pool with the connection, an unlock on another connection returns "
        "false, and behind a transaction pooler lock and unlock reach different server "
        "connections; use `pg_advisory_xact_lock` inside a transaction, or a dedicated "
        "connection (a `NullPool` engine) unlocked in `finally`"
    )
    roles = APP_AND_MIGRATION  # see ## Where it runs
    tokens = ("text", "exec_driver_sql", "advisory_lock")

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        return (
            (("text",), SQLALCHEMY_IMPORT, _SQL_WORDS),
            (("exec_driver_sql",), _SQL_WORDS),
            (("advisory_lock",), SQLALCHEMY_IMPORT),
        )

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        # In a migration, only an env.py that runs on the app's own connection:
        # there its SET outlives the migration in the app's pool.
        self._active = role_of(ctx.path, ctx.config, ctx.source) != MIGRATION or bool(
            ctx.source and _SHARED_CONNECTION.search(ctx.source)
        )

    def visit_Call(self, node: cst.Call) -> None:
        if not self._active:
            return
        if self._advisory_function(node):
            return
        if not is_text_call(self.ctx, node) and not (
            isinstance(node.func, cst.Attribute) and node.func.attr.value in DRIVER_SQL_METHODS
        ):
            return
        arg = first_positional(node)
        if arg is None:
            return
        found = string_argument(self.ctx, arg.value)
        if found is None:
            # ``text(f"SELECT pg_try_advisory_lock({key})")``: the lock is in the
            # fixed text of an f-string (SET is not read there: its value is built).
            fixed = _fstring_text(arg.value)
            if fixed is not None and (lock := _ADVISORY_LOCK.search(fixed)) is not None:
                if not self._in_connection_setup() and not self._dedicated():
                    name = lock.group(0).rstrip("( \t").lower()
                    self.report(arg.value, self.lock_message.format(name=name))
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
        elif (lock := _ADVISORY_LOCK.search(value)) is not None and not self._dedicated():
            name = lock.group(0).rstrip("( \t").lower()
            self.report(arg.value, self.lock_message.format(name=name))

    def _advisory_function(self, node: cst.Call) -> bool:
        """``func.pg_advisory_lock(key)``: reported like the text form."""
        func = node.func
        if not (
            isinstance(func, cst.Attribute)
            and func.attr.value in _ADVISORY_FUNCTIONS
            and self.ctx.resolves_to(func.value, _SQL_FUNC)
        ):
            return False
        if self._active and not self._dedicated():
            self.report(node, self.lock_message.format(name=func.attr.value))
        return True

    def _dedicated(self) -> bool:
        """The lock's connection is the function's own: its engine is built in the
        function or uses ``NullPool`` (closing really closes it), or the function
        opens the connection itself (``async with engine.connect() as conn``) and
        unlocks in a ``finally``. Behind a transaction pooler (``pooler =
        "transaction"``) only the first holds: lock and unlock reach different
        server connections."""
        function = self.ctx.function
        if function is None:
            return False
        if self._callers_connection():
            return True
        code = self.ctx.module.code_for_node(function)
        if "NullPool" in code or re.search(r"\bcreate_(?:async_)?engine\s*\(", code):
            return True
        if self.ctx.config.pooler == "transaction":
            return False
        unlocks_finally = any(
            isinstance(node, cst.Try)
            and node.finalbody is not None
            and re.search(
                r"advisory_unlock|_release", self.ctx.module.code_for_node(node.finalbody)
            )
            for node in subtree(function.body)
        )
        # A lock context manager (``@asynccontextmanager``) that unlocks in
        # ``finally`` on the connection it was given: the caller's block is the
        # critical section, and the caller chooses the connection.
        lock_helper = any(
            "contextmanager" in self.ctx.module.code_for_node(d.decorator)
            for d in function.decorators
        )
        opens_it = bool(re.search(r"with\s+[\w.]+\.connect\(\)\s+as\b", code))
        return unlocks_finally and (opens_it or lock_helper)

    def _callers_connection(self) -> bool:
        """The lock runs on a connection the function was given (a parameter that
        is not a session): the caller chose it, often a dedicated one; the rule
        reports where a session's pooled connection is used."""
        for ancestor in reversed(self.ctx.ancestor_chain()):
            if isinstance(ancestor, (cst.FunctionDef, cst.Lambda)):
                return False
            if isinstance(ancestor, cst.Call) and isinstance(ancestor.func, cst.Attribute):
                receiver = ancestor.func.value
                if not isinstance(receiver, cst.Name):
                    return False
                bindings = self.ctx.scope.lookup(receiver.value)
                return (
                    bool(bindings)
                    and all(b.kind is BindingKind.PARAM for b in bindings)
                    and not is_session(self.ctx, receiver)
                )
        return False

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


def _fstring_text(expr: cst.BaseExpression) -> str | None:
    """The fixed text of an f-string, its interpolations left out."""
    if not isinstance(expr, cst.FormattedString):
        return None
    return "".join(
        part.value for part in expr.parts if isinstance(part, cst.FormattedStringText)
    )
