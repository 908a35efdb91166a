from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SQLALCHEMY_IMPORT
from session_lint.core.walker import subtree
from session_lint.finding import Applicability, Fix, FixAvailability, Import
from session_lint.known import (
    ASYNC_SESSION_CLASSES,
    ASYNC_SESSIONMAKERS,
    SESSION_CLASSES,
    SESSIONMAKERS,
)
from session_lint.project.config import DEFAULT_SESSION_FACTORY
from session_lint.project.dependencies import unimportable_hint
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule


class DirectSession(Rule):
    """
    ## What it does
    Finds sessions built by hand — `AsyncSession(...)`, `Session(...)`,
    `async_sessionmaker(...)()` or `sessionmaker(...)()` — outside the engine modules
    (`engine.py`, `session.py`, `database.py`, `db.py`, `async_session.py`, a `db/` or
    `session/` package; configurable with `engine-modules`).

    ## Why is this bad?
    Every hand-built session picks its own engine, pool and options. One forgets
    `expire_on_commit=False` and raises `MissingGreenlet: greenlet_spawn has not been
    called` on the first attribute read after `commit()`; another binds an engine
    without `statement_cache_size=0` and fails behind pgbouncer with
    `prepared statement "__asyncpg_stmt_1__" does not exist`. One factory, configured
    once, is the only way to fix such settings everywhere at once.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def list_users(engine):
        async with AsyncSession(engine) as session:
            return await session.scalars(select(User))
    ```

    Use instead:
    ```python
    from session_runtime import get_session

    async def list_users():
        async with get_session() as session:
            return await session.scalars(select(User))
    ```

    ## Options
    - `engine-modules`
    - `session-factory`

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test builds sessions
    on its own connection (one savepoint per test), and a migration or a script owns the
    session it opens for its one run. `rule-roles` widens it (docs/roles.md).

    ## Fix safety
    The fix rewrites `async with AsyncSession(...) as s:` (or
    `async with async_sessionmaker(...)() as s:`) to `async with get_session() as s:`
    and imports the configured `session-factory`. It is unsafe: the session then
    uses the factory's engine and options instead of the arguments it was built
    with. Sessions built outside `async with`, and synchronous sessions, are not
    fixed. Nor is any session when the project cannot import the factory's module
    (not one of its own modules nor a declared dependency, e.g. `session_runtime`
    in a project that does not depend on session-runtime): the message then says
    to set `session-factory`.
    """

    code = "SL101"
    name = "direct-session"
    message = "session built by hand; open it from the one session factory (`async with {factory}() as session:`)"
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("Session", "sessionmaker")
    requires = (SQLALCHEMY_IMPORT,)  # the names resolve only through such an import

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.is_engine_module:
            return
        func = node.func
        if self.ctx.resolves_to(func, SESSION_CLASSES):
            is_async = self.ctx.resolves_to(func, ASYNC_SESSION_CLASSES)
        elif isinstance(func, cst.Call) and self.ctx.resolves_to(func.func, SESSIONMAKERS):
            is_async = self.ctx.resolves_to(func.func, ASYNC_SESSIONMAKERS)
        else:
            return
        if self._provides_session(node):
            return
        if not any(arg.keyword is None or arg.keyword.value == "bind" for arg in node.args) and (
            self.ctx.resolves_to(func, SESSION_CLASSES)
        ):
            return  # ``Session()`` without an engine: a scratch session, no connection
        factory = self._factory()
        message = self.message.format(factory=factory.name)
        fix = None
        if is_async and self._fixable_place(node):
            if self.ctx.project_can_import(factory.module):
                fix = self._fix(node, factory)
            else:
                message += unimportable_hint(factory.module, "session-factory")
        self.report(node, message, fix=fix)

    def _factory(self) -> Import:
        """The configured ``session-factory``; when that is the default and the
        project cannot import it, the project's own factory if the index found
        exactly one usable as ``async with factory() as session:``."""
        config = self.ctx.config
        configured = Import.from_target(config.session_factory)
        if config.session_factory != DEFAULT_SESSION_FACTORY or self.ctx.project_can_import(
            configured.module
        ):
            return configured
        candidates = config.project.context_factories
        if len(candidates) != 1:
            return configured
        module, _, name = candidates[0].rpartition(".")
        return Import(module, name)

    def _provides_session(self, node: cst.Call) -> bool:
        """The enclosing function hands the session it builds on: it yields or
        returns it (a session factory: the project's own, which the factory advice
        would send callers to), or stores it on an attribute (a middleware's
        ``request.state.session``). Building the session is that function's job."""
        function = self.ctx.function
        if function is None:
            return False
        ancestors = list(self.ctx.ancestor_chain())
        # ``s = AsyncSession(e) if cond else other()``: the conditional is the value.
        while ancestors and isinstance(ancestors[-1], cst.IfExp):
            ancestors.pop()
        parent = ancestors[-1] if ancestors else None
        if isinstance(parent, (cst.Return, cst.Yield)):
            return True
        names: set[str] = set()
        if isinstance(parent, cst.WithItem) and parent.asname is not None:
            if isinstance(parent.asname.name, cst.Name):
                names.add(parent.asname.name.value)
        elif isinstance(parent, (cst.Assign, cst.AnnAssign)):
            targets = (
                [t.target for t in parent.targets]
                if isinstance(parent, cst.Assign)
                else [parent.target]
            )
            if any(isinstance(t, cst.Attribute) for t in targets):
                return True
            names.update(t.value for t in targets if isinstance(t, cst.Name))
        if not names:
            return False
        for sub in subtree(function.body):
            if isinstance(sub, (cst.Return, cst.Yield)) and isinstance(sub.value, cst.Name):
                if sub.value.value in names:
                    return True
            elif isinstance(sub, cst.Assign) and isinstance(sub.value, cst.Name):
                if sub.value.value in names and any(
                    isinstance(t.target, cst.Attribute) for t in sub.targets
                ):
                    return True
        return False

    def _fixable_place(self, node: cst.Call) -> bool:
        """``async with <node> as s:``, the one place the fix rewrites."""
        ancestors = self.ctx.ancestor_chain()
        if len(ancestors) < 2:
            return False
        item, statement = ancestors[-1], ancestors[-2]
        return (
            isinstance(item, cst.WithItem)
            and item.item is node
            and isinstance(statement, cst.With)
            and statement.asynchronous is not None
        )

    def _fix(self, node: cst.Call, factory: Import) -> Fix | None:
        if not self.ctx.can_import(factory):
            return None
        assert factory.name is not None
        call = cst.Call(func=cst.Name(factory.name))
        return Fix.replace(
            node,
            call,
            Applicability.UNSAFE,
            imports=(factory,),
            description=f"open the session with `{factory.name}()`",
        )
