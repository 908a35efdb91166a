from __future__ import annotations

import enum
from dataclasses import dataclass

import libcst as cst

from session_lint.core.context import FileContext, PendingFinding
from session_lint.core.prefilter import SESSION, Clause, clauses
from session_lint.core.scopes import BindingKind, Scope, ScopeKind, dotted_name
from session_lint.core.walker import iter_nodes
from session_lint.known import SESSION_CLASSES
from session_lint.project.config import Config
from session_lint.project.effects import STATEMENT_METHODS
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import (
    is_async_session_source,
    is_project_session_factory,
    is_session_factory,
)

# What request code does with a session it shares: statements, writes, transaction
# ends. ``close()`` is left out: a shutdown hook closing the shared session is not
# a second user of it.
_SESSION_METHODS = STATEMENT_METHODS | frozenset(
    {"add", "add_all", "commit", "rollback", "begin", "begin_nested", "query", "run_sync"}
)
# Calls that run a coroutine function once, as a program's entry point, and the
# conventional names of such functions (as SL103 counts them): one user, not many.
_ENTRY_RUNNERS = frozenset({"asyncio.run", "anyio.run", "trio.run", "uvloop.run"})
_ONCE_NAMES = frozenset(
    {"main", "async_main", "lifespan", "startup", "shutdown", "on_startup", "on_shutdown"}
)
# What an application object is called where ``<app>.state`` holds process-wide
# state (``request.app.state``); ``request.state`` is per request and stays out.
_APP_NAMES = frozenset({"app", "application"})
# Model bases that copy a field's default into each instance: a class attribute of
# theirs is not one object shared by every instance.
_COPYING_BASES = ("pydantic.", "sqlmodel.")


class _Holder(enum.Enum):
    NAME = "module-level name"  # ``session = factory()`` at module level or ``global``
    CLASS = "class attribute"  # ``session = factory()`` in a class body
    INIT = "instance attribute"  # ``self.session = factory()`` in ``__init__``
    STATE = "app.state attribute"  # ``app.state.session = factory()``


@dataclass(frozen=True)
class _Created:
    holder: _Holder
    key: str  # the name or attribute that holds the session
    call: cst.Call
    top: cst.CSTNode | None  # the top-level statement, for the finding's position
    place: str  # how the message names the holder
    is_async: bool
    owner: cst.ClassDef | None = None  # CLASS / INIT: the class
    creator: cst.FunctionDef | None = None  # the function that stores it, if any


@dataclass(frozen=True)
class _Use:
    kind: str  # "name", "self", "member", "state"
    key: str  # name, attribute, or "<object>.<attribute>"
    function: cst.FunctionDef
    owner: cst.ClassDef | None = None  # "self": the method's class


class SessionOnSharedObject(Rule):
    """
    ## What it does
    Finds a session (not a session factory) created once and kept where every
    request sees it, when async code in the same file uses it:

    - a module-level `session = factory()` (or `AsyncSession(engine)`, or a name a
      function assigns under `global`);
    - a class attribute `session = factory()`;
    - `self.session = factory()` in `__init__` of a class of which the file makes a
      module-level instance (`repo = Repository()`);
    - `app.state.session = factory()`, at module level or in a lifespan/startup
      handler.

    "Uses" means a session method (`execute`, `get`, `add`, `commit`, `rollback`…)
    called on it, or the session returned or yielded (a dependency handing it to
    every request), in an `async def`: through the module name, the instance's or
    class's attribute, `self.<attribute>` in an async method of that class, or
    `request.app.state.<attribute>` / `app.state.<attribute>`. The finding is where
    the session is created.

    ## Why is this bad?
    A session is one connection and one transaction. Kept on a module, a class or
    the app, it is shared by every request the process serves concurrently, and an
    `AsyncSession` does one thing at a time. Measured through pgbouncer in
    transaction mode (tests/runtime/test_session_on_shared_object.py), with two
    concurrent requests on one shared session:

    - While the session waits for a new connection (its first use, the engine's
      pool still empty), the second request fails with
      `sqlalchemy.exc.InvalidRequestError: This session is provisioning a new
      connection; concurrent operations are not permitted`.
    - Once the session holds a connection, the second request's statement waits
      for the first and runs in the same transaction (both read the same
      `txid_current()`).
    - So the requests share their writes too: request A inserts a row and, before A
      commits, request B's statement fails and B calls `rollback()`, as any error
      handler does. A's `commit()` then succeeds and commits nothing: A's row is
      gone, and neither request sees an error. A synchronous `Session` shared by
      async handlers loses A's row the same way.

    With a session per request, both reads succeed in transactions of their own
    and A's row is kept.

    ## Known problems
    Only uses in the same file are seen: a module-level session imported and used
    elsewhere is not reported. An `async def` that runs once per process does not
    count as a user: one named `main`/`async_main`, `startup`/`shutdown`
    (`on_startup`/`on_shutdown`) or `*lifespan*`, one decorated
    `@app.on_event(...)`, or one passed to `asyncio.run(...)` in the file. One
    that runs once under another name (a poller started once, the module's only
    user) is counted, although nothing shares the session then: `# noqa: SL409`
    there. On the pinned real-code corpus (docs/corpus.md) the rule reports
    nothing: no package there creates a session in one of these places.

    ## Example
    ```python
    from app.db import async_session
    from app.models import User

    class UserRepository:
        def __init__(self) -> None:
            self.session = async_session()

        async def get(self, user_id: int) -> User | None:
            return await self.session.get(User, user_id)

    users = UserRepository()
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.models import User

    class UserRepository:
        def __init__(self, session: AsyncSession) -> None:
            self.session = session

        async def get(self, user_id: int) -> User | None:
            return await self.session.get(User, user_id)
    ```

    Build the repository per request, with the request's session (a FastAPI
    dependency: `Depends(UserRepository)` over a `get_db` dependency), or keep the
    factory on the shared object and open a session per call (`async with
    self.factory() as session:`).

    ## Where it runs
    `app` files only, not `script`, `test` or `migration` ones: a script's
    module-level session serves its one run, a test module's serves tests that run
    one at a time, and a migration's serves one upgrade. Only an application serves
    concurrent requests from one process. `rule-roles` widens it (docs/roles.md).
    """

    code = "SL409"
    name = "session-on-shared-object"
    message = (
        "session created once and kept on {place}, and async code uses it: concurrent "
        "requests share one AsyncSession (`InvalidRequestError: This session is "
        "provisioning a new connection; concurrent operations are not permitted`) and "
        "one transaction, so one request's rollback discards another's writes; open a "
        "session per request (`async with factory() as session:`)"
    )
    sync_message = (
        "session created once and kept on {place}, and async code uses it: concurrent "
        "requests share one session and one transaction, so one request's rollback "
        "discards another's writes; open a session per request"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = SESSION  # a session class or factory, the configured factories' names
    requires = (("async",),)  # a user is an ``async def``

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        # A call of one of the project's factories gives a session too, whatever
        # the factory is called (the index's factories and factory attributes).
        own = clauses(config, cls.tokens, *cls.requires)
        project = config.project
        names = {n.rsplit(".", 1)[-1] for n, _, _ in project.session_factories}
        names.update(name for name, _, _ in project.attribute_factories)
        return (*own, (tuple(sorted(names)), *cls.requires)) if names else own

    def __init__(self, ctx: FileContext) -> None:
        super().__init__(ctx)
        self._created: list[_Created] = []
        self._uses: list[_Use] = []
        self._entries: set[str] = set()
        self._module_scope: Scope | None = None

    def visit_Module(self, node: cst.Module) -> None:
        self._module_scope = self.ctx.scope

    # -- where sessions are created ----------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.resolves_to(node.func, _ENTRY_RUNNERS) and node.args:
            target = node.args[0].value
            target = target.func if isinstance(target, cst.Call) else target
            if isinstance(target, cst.Name):
                self._entries.add(target.value)
            return
        parent = self.ctx.parent
        if not isinstance(parent, (cst.Assign, cst.AnnAssign)) or parent.value is not node:
            return
        targets = (
            [t.target for t in parent.targets]
            if isinstance(parent, cst.Assign)
            else [parent.target]
        )
        if len(targets) != 1 or not self._makes_session(node):
            return
        created = self._holder(targets[0], node)
        if created is not None:
            self._created.append(created)

    def _makes_session(self, call: cst.Call) -> bool:
        """A call that gives a session (as SL404 recognises one): a session class
        with an engine, a sessionmaker of this file, or a project factory."""
        if self.ctx.resolves_to(call.func, SESSION_CLASSES):
            # ``AsyncSession()`` without an engine never reaches a database.
            return any(a.keyword is None or a.keyword.value == "bind" for a in call.args)
        return is_session_factory(self.ctx, call.func) or is_project_session_factory(self.ctx, call)

    def _holder(self, target: cst.BaseExpression, call: cst.Call) -> _Created | None:
        scope = self.ctx.scope
        top = self.ctx.ancestors[1] if len(self.ctx.ancestors) > 1 else None
        is_async = is_async_session_source(self.ctx, call)
        if isinstance(target, cst.Name):
            name = target.value
            if scope.kind is ScopeKind.MODULE:
                return _Created(_Holder.NAME, name, call, top, f"module-level `{name}`", is_async)
            if scope.kind is ScopeKind.FUNCTION and name in scope.global_names:
                creator = scope.node if isinstance(scope.node, cst.FunctionDef) else None
                place = f"module-level `{name}`"
                return _Created(_Holder.NAME, name, call, top, place, is_async, creator=creator)
            if scope.kind is ScopeKind.CLASS and _top_level_class(scope):
                owner = scope.node
                assert isinstance(owner, cst.ClassDef)
                if self._copies_defaults(owner, scope):
                    return None
                place = f"class attribute `{owner.name.value}.{name}`"
                return _Created(_Holder.CLASS, name, call, top, place, is_async, owner=owner)
            return None
        if not isinstance(target, cst.Attribute):
            return None
        attribute = target.attr.value
        function = self.ctx.function
        obj = target.value
        if isinstance(obj, cst.Name) and obj.value == "self":
            if (
                function is None
                or function.name.value != "__init__"
                or scope.parent is None
                or scope.parent.kind is not ScopeKind.CLASS
                or not _top_level_class(scope.parent)
            ):
                return None
            owner = scope.parent.node
            assert isinstance(owner, cst.ClassDef)
            place = f"`self.{attribute}` of `{owner.name.value}`"
            return _Created(
                _Holder.INIT, attribute, call, top, place, is_async, owner=owner, creator=function
            )
        if _is_app_state(obj):
            place = f"`{dotted_name(target) or target.attr.value}`, which lives as long as the app"
            return _Created(_Holder.STATE, attribute, call, top, place, is_async, creator=function)
        return None

    def _copies_defaults(self, owner: cst.ClassDef, scope: Scope) -> bool:
        outer = scope.parent or scope
        return any(
            name.startswith(_COPYING_BASES)
            for base in owner.bases
            for name in self.ctx.qualified_names(base.value, outer)
        )

    # -- where they are used -------------------------------------------------------------
    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value not in _SESSION_METHODS or not self.ctx.in_async_function:
            return
        parent = self.ctx.parent
        if not isinstance(parent, cst.Call) or parent.func is not node:
            return
        function = self.ctx.function
        assert function is not None
        use = self._use(node.value, function)
        if use is not None:
            self._uses.append(use)

    def visit_Return(self, node: cst.Return) -> None:
        self._handed_on(node.value)

    def visit_Yield(self, node: cst.Yield) -> None:
        value = node.value
        self._handed_on(value if isinstance(value, cst.BaseExpression) else None)

    def _handed_on(self, value: cst.BaseExpression | None) -> None:
        """``return session`` / ``yield session`` in an ``async def``: a dependency
        handing the shared session to every request that asks for one."""
        if value is None or not self.ctx.in_async_function:
            return
        function = self.ctx.function
        assert function is not None
        use = self._use(value, function)
        if use is not None:
            self._uses.append(use)

    def _use(self, receiver: cst.BaseExpression, function: cst.FunctionDef) -> _Use | None:
        scope = self.ctx.scope
        if isinstance(receiver, cst.Name):
            if _module_level_name(scope, receiver.value):
                return _Use("name", receiver.value, function)
            return None
        if not isinstance(receiver, cst.Attribute):
            return None
        attribute = receiver.attr.value
        obj = receiver.value
        if isinstance(obj, cst.Name):
            if obj.value in ("self", "cls"):
                method = scope.enclosing_function()
                owner = method.parent if method is not None else None
                if owner is not None and isinstance(owner.node, cst.ClassDef):
                    return _Use("self", attribute, function, owner=owner.node)
                return None
            if _module_level_name(scope, obj.value):
                return _Use("member", f"{obj.value}.{attribute}", function)
            return None
        if _is_app_state(obj):
            return _Use("state", attribute, function)
        return None

    # -- matching ------------------------------------------------------------------------
    def leave_Module(self, node: cst.Module) -> None:
        if not self._created or not self._uses:
            return
        uses = [u for u in self._uses if not self._runs_once(u.function)]
        for created in self._created:
            if any(self._matches(created, use) for use in uses):
                template = self.message if created.is_async else self.sync_message
                place = created.place
                if created.holder is _Holder.INIT and created.owner is not None:
                    shared = ", ".join(f"`{n}`" for n in sorted(self._instances(created.owner)))
                    place += f" (module-level instance {shared})"
                # Reported after the walk: the position comes from the statement the
                # session was created in, as ``Rule.report`` records it.
                self.ctx.reports.append(
                    PendingFinding(
                        self.code,
                        self.name,
                        created.call,
                        template.format(place=place),
                        None,
                        created.top,
                    )
                )

    def _runs_once(self, function: cst.FunctionDef) -> bool:
        """An entry point, a lifespan, or a startup/shutdown hook: run once per
        process, not once per request."""
        name = function.name.value
        if name in _ONCE_NAMES or "lifespan" in name or name in self._entries:
            return True
        return any(
            isinstance(d.decorator, cst.Call)
            and isinstance(d.decorator.func, cst.Attribute)
            and d.decorator.func.attr.value == "on_event"
            for d in function.decorators
        )

    def _matches(self, created: _Created, use: _Use) -> bool:
        if use.function is created.creator:
            return False  # the function that stores it (a lifespan closing it)
        holder = created.holder
        if holder is _Holder.NAME:
            return use.kind == "name" and use.key == created.key
        if holder is _Holder.STATE:
            return use.kind == "state" and use.key == created.key
        owner = created.owner
        assert owner is not None
        if holder is _Holder.CLASS and self._assigned_on_self(owner, created.key):
            return False  # each instance sets its own, hiding the class attribute
        if use.kind == "self" and use.owner is owner:
            return holder is _Holder.CLASS or bool(self._instances(owner))
        if use.kind != "member":
            return False
        obj, _, attribute = use.key.partition(".")
        if attribute != created.key:
            return False
        if holder is _Holder.CLASS:
            return obj == owner.name.value and self._is_module_class(obj, owner)
        return obj in self._instances(owner)

    def _is_module_class(self, name: str, owner: cst.ClassDef) -> bool:
        assert self._module_scope is not None
        bindings = self._module_scope.bindings.get(name, [])
        return len(bindings) == 1 and bindings[0].node is owner

    def _instances(self, owner: cst.ClassDef) -> set[str]:
        """Module-level names every binding of which is ``Owner(...)``."""
        assert self._module_scope is not None
        name = owner.name.value
        if not self._is_module_class(name, owner):
            return set()
        found: set[str] = set()
        for bound, bindings in self._module_scope.bindings.items():
            if all(
                b.kind is BindingKind.ASSIGNMENT
                and isinstance(b.value, cst.Call)
                and isinstance(b.value.func, cst.Name)
                and b.value.func.value == name
                for b in bindings
            ):
                found.add(bound)
        return found

    @staticmethod
    def _assigned_on_self(owner: cst.ClassDef, attribute: str) -> bool:
        for statement in owner.body.body:
            if not isinstance(statement, cst.FunctionDef):
                continue
            for sub in iter_nodes(statement.body):
                for target in _assign_targets(sub):
                    if (
                        isinstance(target, cst.Attribute)
                        and isinstance(target.value, cst.Name)
                        and target.value.value == "self"
                        and target.attr.value == attribute
                    ):
                        return True
        return False


def _top_level_class(scope: Scope) -> bool:
    """A class defined at module level: the only kind the module can share."""
    return (
        scope.kind is ScopeKind.CLASS
        and scope.parent is not None
        and scope.parent.kind is ScopeKind.MODULE
    )


def _module_level_name(scope: Scope, name: str) -> bool:
    """``name`` read here is the module's: no function or lambda around binds it
    (class bodies are skipped, as Python's scoping does for nested functions)."""
    current: Scope | None = scope
    first = True
    while current is not None and current.parent is not None:
        if (first or current.kind is not ScopeKind.CLASS) and name in current.bindings:
            if name not in current.global_names:
                return False
        if name in current.nonlocal_names:
            return False
        first = False
        current = current.parent
    return current is not None and name in current.bindings


def _is_app_state(expr: cst.BaseExpression) -> bool:
    """``app.state``, ``request.app.state``, ``self.app.state``: the app's state,
    which lives as long as the process (``request.state`` is per request)."""
    if not (isinstance(expr, cst.Attribute) and expr.attr.value == "state"):
        return False
    owner = expr.value
    if isinstance(owner, cst.Name):
        return owner.value in _APP_NAMES
    return isinstance(owner, cst.Attribute) and owner.attr.value in _APP_NAMES


def _assign_targets(statement: cst.CSTNode) -> list[cst.BaseExpression]:
    if isinstance(statement, cst.Assign):
        return [t.target for t in statement.targets]
    if isinstance(statement, (cst.AnnAssign, cst.AugAssign)):
        return [statement.target]
    return []
