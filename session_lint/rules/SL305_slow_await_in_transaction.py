from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.prefilter import SESSION_OR_CONNECTION, Clause, Whole, clauses
from session_lint.core.scopes import BindingKind, Scope
from session_lint.known import is_slow_call
from session_lint.project.config import Config
from session_lint.project.effects import STATEMENT_METHODS
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.effects import (
    CallEffect,
    call_effect,
    enclosing_class,
    expression_effect,
    slow_name,
)
from session_lint.semantics.ownership import dependencies, injected_sessions, is_route_handler
from session_lint.semantics.sessions import is_session, session_binding
from session_lint.semantics.transactions import enclosing_transactions

_CLOSES = frozenset({"commit", "rollback", "close"})
_REQUEST_SESSION = "the request's session"


class SlowAwaitInTransaction(Rule):
    """
    ## What it does
    Finds a slow, non-database call made while a transaction is open on a session
    this function owns or received:

    - an explicit transaction block: `async with session.begin():`,
      `async with factory.begin() as session:`, `async with engine.begin() as conn:`;
    - an **autobegun** transaction: the session's first statement (`execute()`,
      `get()`, `scalar(s)()`, `flush()`, `refresh()`…) began one, and no
      `commit()`, `rollback()` or `close()` (nor the end of the session's
      `async with`) has ended it yet. A call of a project function that runs a
      statement on the session it is handed (a repository method reading through
      `self.session`) begins it the same way;
    - a FastAPI route whose dependencies ran a statement on the request's session
      (`user: User = Depends(get_current_user)` reading the user through it): that
      transaction stays open for the whole route unless the route commits it.

    Slow calls are the `slow-calls` list — `asyncio.sleep`, `time.sleep`, and
    anything under `httpx`, `aiohttp.ClientSession`, `requests`, `openai`,
    `anthropic`, `boto3`/`aioboto3`, `smtplib` (building a client or a value is
    not a call that waits) — matched through imports, through the client a name
    was built from (`async with httpx.AsyncClient() as client: await
    client.get(...)`, `self.http = httpx.AsyncClient()` in `__init__`), and
    through project functions that make one, however deep: the message names the
    chain (`refresh_name → fetch_profile → httpx.AsyncClient.get`).

    ## Why is this bad?
    While the transaction is open it holds a pooled connection, its row locks
    and, behind a transaction pooler (pgbouncer, Supavisor), a server connection
    that no other client can use. The connection sits *idle in transaction* for
    the whole external call (PostgreSQL's `pg_stat_activity` says so): under a
    pool of N, N slow calls at once make every other request wait and fail with
    `QueuePool limit of size N overflow M reached, connection timed out`. A slow
    or hanging call also runs into PostgreSQL's
    `idle_in_transaction_session_timeout`: the server ends the connection, and
    the request's next statement fails (asyncpg: `the underlying connection is
    closed`). `tests/runtime/test_effects_through_calls.py` shows all three
    through pgbouncer.

    Do the slow work before the first statement, or after the commit (read what
    you need, commit or close, then call out).

    ## Known problems
    Statements are followed in source order through one function: a commit in
    one branch is taken to end the transaction for the code after the branch
    (a miss rather than a false alarm). A call through an object the project
    index cannot tie to a class (a service looked up at run time, a provider
    chosen from settings) has no effect. A wait inside an `except` handler (a
    retry's backoff, usually after a rollback) does not make a function slow for
    its callers. Connections are followed only in explicit `engine.begin()`
    blocks.

    Silent: slow calls before the session's first statement; after
    `commit()`/`rollback()`/`close()` with no further use of the session; on a
    session made with `autobegin=False`; `asyncio.sleep(0)`.

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
    autobegun_message = (
        "`{call}` while `{key}` holds the transaction `{opener}` began (autobegin): the "
        "pooled connection sits idle in transaction for the whole wait, "
        "and N such calls at once exhaust a pool of N; commit or close `{key}` before it, "
        "or make the call first"
    )
    roles = APP_ONLY  # see ## Where it runs
    requires = (SESSION_OR_CONNECTION,)  # and a session or a connection

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        """A slow call needs its module's name in the file (``httpx``, ``asyncio``:
        through an import, a client's constructor or a parameter's annotation),
        or the name of a project function that is slow, or of an attribute that
        holds a slow client (``self.http.post``); and a session or a connection."""
        words: set[str | Whole] = set()
        for pattern in config.slow_calls:
            words.add(pattern.split(".", 1)[0])
            if not pattern.endswith("*"):
                words.add(pattern.rsplit(".", 1)[-1])
        project = config.project
        words.update(Whole(name.rsplit(".", 1)[-1]) for name, slow, *_ in project.effects if slow)
        words.update(
            Whole(attribute)
            for _, attribute, held in project.held_attributes
            if is_slow_call(f"{held}.call", config.slow_calls)
        )
        if not words:
            return ()
        return clauses(config, tuple(sorted(words, key=str)), SESSION_OR_CONNECTION)

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._reported: set[int] = set()
        # The functions being walked, innermost last: the autobegun transactions of
        # each are followed call by call as the one walk of the file reaches them.
        self._functions: list[_Function] = []

    # -- the walk ------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        function = self._in_body()
        if function is not None:
            self._autobegun(node, function)
        self._explicit(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        scope = self.ctx.scope
        function = _Function(node.body, len(self.ctx.ancestors), scope, {}, {})
        self._opened_by_dependencies(node, scope, function.open_)
        self._functions.append(function)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._functions.pop()

    def leave_With(self, original_node: cst.With) -> None:
        # A ``with`` block that bound sessions, or began their transactions, ends.
        function = self._in_body()
        if function is not None:
            for name in _ended_by(original_node):
                function.open_.pop(name, None)

    def _in_body(self) -> _Function | None:
        """The function whose body (not a nested definition's, a lambda's, a
        decorator's or a default's) holds the node being visited."""
        if not self._functions:
            return None
        function = self._functions[-1]
        ancestors = self.ctx.ancestors
        if (
            self.ctx.scope is not function.scope
            or len(ancestors) <= function.depth
            or ancestors[function.depth] is not function.body
        ):
            return None
        return function

    # -- explicit transaction blocks -----------------------------------------------
    def _explicit(self, node: cst.Call) -> None:
        if id(node) in self._reported or not enclosing_transactions(self.ctx):
            return
        call = self._slow(node, self.ctx.scope)
        if call is not None:
            self._reported.add(id(node))
            self.report(node, self.message.format(call=call))

    def _slow(self, node: cst.Call, scope: Scope) -> str | None:
        """The slow call ``node`` makes, directly (by name) or through a project
        function (``refresh_name → fetch_profile → httpx.AsyncClient.get``)."""
        direct = slow_name(self.ctx, node.func, scope)
        if direct is not None:
            if direct.endswith(".sleep") and _is_zero(node):
                return None  # sleep(0) only yields to the event loop
            return direct
        effect = call_effect(self.ctx, node, scope)
        if effect is not None and effect.slow:
            return f"{effect.name} → {effect.slow}"
        return None

    # -- autobegun transactions ----------------------------------------------------
    def _autobegun(self, call: cst.Call, function: _Function) -> None:
        scope, open_, keys = function.scope, function.open_, function.keys
        session, method = self._session_method(call, scope, keys)
        if session is not None:
            if method in _CLOSES:
                open_.pop(session, None)
            elif method in STATEMENT_METHODS:
                open_.setdefault(session, f"{session}.{method}()")
            return
        # Whether the call waits matters only while a transaction is open.
        slow = self._slow(call, scope) if open_ and id(call) not in self._reported else None
        if slow is not None:
            key, opener = next(iter(open_.items()))
            self._reported.add(id(call))
            self.report(call, self.autobegun_message.format(call=slow, key=key, opener=opener))
        # What the callee does matters only to the sessions handed to it: most calls
        # hand none, and resolving the callee is the costly part.
        handed = list(self._handed(call, scope, keys))
        if handed:
            effect = call_effect(self.ctx, call, scope)
            if effect is not None:
                self._apply(effect, handed, open_)

    def _opened_by_dependencies(
        self, function: cst.FunctionDef, scope: Scope, open_: dict[str, str]
    ) -> None:
        """A route whose dependencies ran a statement on the request's session
        (``user: User = Depends(get_current_user)`` reading the user through it)
        starts with that transaction open: FastAPI gives every dependency of one
        request the same session, and nothing ends the transaction before the
        route returns unless the route commits it."""
        parent = scope.parent
        if parent is None or not is_route_handler(self.ctx, function, parent):
            return
        sessions = injected_sessions(self.ctx, function, scope)
        for name, depends in dependencies(self.ctx, function, scope).items():
            if name in sessions or not depends.args:
                continue
            effect = expression_effect(self.ctx, depends.args[0].value, parent)
            if effect is None or not effect.uses_db:
                continue
            opener = f"{effect.name}() (a dependency)"
            for session in sessions or (_REQUEST_SESSION,):
                open_.setdefault(session, opener)

    def _apply(self, effect: CallEffect, handed: list[str], open_: dict[str, str]) -> None:
        """A project function handed a session: it may commit it, or run a
        statement on it (a repository method reading through ``self.session``)."""
        for key in handed:
            if effect.commits or effect.rolls_back:
                open_.pop(key, None)
            elif effect.uses_db:
                open_.setdefault(key, f"{effect.name}()")

    def _handed(self, call: cst.Call, scope: Scope, keys: dict[str, bool]) -> Iterator[str]:
        for arg in call.args:
            key = self._key(arg.value, scope, keys)
            if key is not None:
                yield key
        func = call.func
        if isinstance(func, cst.Attribute):
            head = func.value
            while isinstance(head, cst.Attribute):
                head = head.value
            if isinstance(head, cst.Name) and head.value == "self":
                yield from (k for k, tracked in keys.items() if tracked and k.startswith("self."))
                holder = func.value
                if (
                    isinstance(holder, cst.Attribute)
                    and isinstance(holder.value, cst.Name)
                    and holder.value.value == "self"
                    and self._holds_a_session(holder.attr.value, scope)
                ):
                    # ``self.users.get()``: the repository's session, held on ``self``
                    yield f"self.{holder.attr.value}"
            elif isinstance(func.value, cst.Name):
                # ``repo.get()`` of ``repo = UserRepository(session)``: built on it
                for b in scope.lookup(func.value.value):
                    value = b.value
                    if b.kind is BindingKind.ASSIGNMENT and isinstance(value, cst.Call):
                        for arg in value.args:
                            key = self._key(arg.value, scope, keys)
                            if key is not None:
                                yield key

    def _holds_a_session(self, attribute: str, scope: Scope) -> bool:
        """``self.<attribute>`` is an object built on a session (a repository)."""
        project = self.ctx.config.project
        owner = enclosing_class(self.ctx, scope)
        held = project.held.get((owner or "", attribute))
        return held is not None and held in project.session_holders

    def _session_method(
        self, call: cst.Call, scope: Scope, keys: dict[str, bool]
    ) -> tuple[str | None, str]:
        func = call.func
        if not isinstance(func, cst.Attribute):
            return None, ""
        return self._key(func.value, scope, keys), func.attr.value

    def _key(self, expr: cst.BaseExpression, scope: Scope, keys: dict[str, bool]) -> str | None:
        """``session`` or ``self.session`` when ``expr`` is a session this function
        opened or received, whose transaction autobegins."""
        if isinstance(expr, cst.Name):
            key = expr.value
        elif (
            isinstance(expr, cst.Attribute)
            and isinstance(expr.value, cst.Name)
            and expr.value.value == "self"
        ):
            key = f"self.{expr.attr.value}"
        else:
            return None
        tracked = keys.get(key)
        if tracked is None:
            tracked = is_session(self.ctx, expr, scope) and not self._no_autobegin(expr, scope)
            keys[key] = tracked
        return key if tracked else None

    def _no_autobegin(self, expr: cst.BaseExpression, scope: Scope) -> bool:
        """A session made with ``autobegin=False``: a statement begins nothing."""
        if not isinstance(expr, cst.Name):
            return False
        found = session_binding(self.ctx, expr.value, scope)
        if found is None:
            return False
        value = found[0].value
        if isinstance(value, cst.Await):
            value = value.expression
        return isinstance(value, cst.Call) and any(
            a.keyword is not None
            and a.keyword.value == "autobegin"
            and isinstance(a.value, cst.Name)
            and a.value.value == "False"
            for a in value.args
        )


@dataclass
class _Function:
    """A function being walked: its body, its depth in the walk, its scope, the
    sessions whose transaction is open (key -> what began it) and the session
    expressions seen (key -> whether tracked)."""

    body: cst.BaseSuite
    depth: int
    scope: Scope
    open_: dict[str, str]
    keys: dict[str, bool]


def _ended_by(node: cst.With) -> Iterator[str]:
    """What leaving ``node`` ends: the sessions it bound (``as session``) and the
    transactions it began (``session.begin()``, ``self.session.begin()``)."""
    for item in node.items:
        if item.asname is not None and isinstance(item.asname.name, cst.Name):
            yield item.asname.name.value
        call = item.item
        if (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Attribute)
            and call.func.attr.value == "begin"
        ):
            owner = call.func.value
            if isinstance(owner, cst.Name):
                yield owner.value
            elif (
                isinstance(owner, cst.Attribute)
                and isinstance(owner.value, cst.Name)
                and owner.value.value == "self"
            ):
                yield f"self.{owner.attr.value}"


def _is_zero(call: cst.Call) -> bool:
    if not call.args:
        return False
    value = call.args[0].value
    return isinstance(value, (cst.Integer, cst.Float)) and float(value.value) == 0
