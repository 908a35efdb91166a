from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SQLALCHEMY_IMPORT
from session_lint.core.scopes import BindingKind, ScopeKind
from session_lint.core.walker import subtree
from session_lint.known import ASYNC_SCOPED_SESSIONS, SYNC_SCOPED_SESSIONS
from session_lint.project.removals import removal_names
from session_lint.project.roles import APP_AND_SCRIPT
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import scopefunc_of

CURRENT_TASK = frozenset({"asyncio.current_task", "asyncio.tasks.current_task"})


class ScopedSessionNeverRemoved(Rule):
    """
    ## What it does
    Finds an `async_scoped_session(...)` (or a `scoped_session(...)`) scoped by
    task, `scopefunc=asyncio.current_task`, bound to a name or an attribute
    (`Session = ...`, `self.scoped = ...`, `app.state.db = ...`) on which no code of
    the project ever calls `.remove()`: not through that name, not through the
    attribute it is stored on, not through an alias (`from app.db import Session as
    S`, `Database(scoped=Session)`).

    A construction that is not bound to a name or attribute (returned by a factory
    function, passed on) and one bound to a function's local name (the registry
    goes with the call) are left alone.

    ## Why is this bad?
    A scoped session's registry is a dict keyed by what `scopefunc` returns: with
    `asyncio.current_task` every task that calls `Session()` adds an entry, the
    task itself as the key and its `AsyncSession` as the value. Only `remove()`
    deletes the entry; `close()` releases the connection but leaves the session in
    the registry. A finished task is never collected while it is a key, so an API
    (a task per request) or a worker (a task per job) keeps every task and every
    session it ever made: memory grows without bound.

    Measured through pgbouncer (tests/runtime/test_scoped_session_registry.py): 200
    tasks that each run a query and `close()` their session leave
    `len(Session.registry.registry) == 200`, with all 200 sessions and all 200
    finished tasks still alive; the same tasks ending with `await Session.remove()`
    leave 0 entries, 0 sessions and 0 tasks.

    ## Known problems
    Removal is found by name, across the whole project: any `X.remove()` (or
    `X.remove` passed as a callback, or `X.registry.clear()`) whose receiver is
    spelled like the bound name, or like an alias of it, silences the finding,
    wherever it runs (a test's teardown included). A scoped session handed to code that removes it through a
    positional parameter (`Database(Session)` with `self.scoped.remove()`) is not
    followed: add a `# noqa: SL407`. A task-scoped session bound to a local name
    of a long-running function (a worker's `main()`) grows for as long as that
    call runs and is not reported. A scoped session keyed by a `ContextVar` (a
    request id) keeps an entry per value the same way; SL406 reports it, and its
    fix, `scopefunc=current_task`, brings it here.

    A thread-local `scoped_session` (the default scope) is not reported: its
    registry is a `threading.local`, and a thread's session goes with its thread
    (the runtime test above finds none of 20 threads' sessions alive once they
    ended), and a pool's threads keep at most one session each.

    ## Example
    ```python
    from asyncio import current_task

    from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker

    from app.models import Order

    Session = async_scoped_session(async_sessionmaker(), scopefunc=current_task)


    async def handle(order_id: int) -> None:
        try:
            await Session.get(Order, order_id)
        finally:
            await Session.close()
    ```

    Use instead:
    ```python
    from asyncio import current_task

    from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker

    from app.models import Order

    Session = async_scoped_session(async_sessionmaker(), scopefunc=current_task)


    async def handle(order_id: int) -> None:
        try:
            await Session.get(Order, order_id)
        finally:
            await Session.remove()
    ```

    ## Where it runs
    `app` and `script` files: services and workers run many tasks for as long as
    the process lives. Not `test` files, where a fixture's scoped session lives for
    a test or a test run and is dropped with it, nor `migration` ones, which run
    once. `rule-roles` widens it (docs/roles.md).
    """

    code = "SL407"
    name = "scoped-session-never-removed"
    message = (
        "`{name}` is a scoped session with one registry entry per task (`current_task`) "
        "that nothing in the project removes: `close()` keeps the entry, so every finished "
        "task stays a key of the registry with its session and the registry grows without "
        "bound; call `{call}` when each task's work ends (in a `finally`, a middleware "
        "or a dependency's teardown)"
    )
    roles = APP_AND_SCRIPT  # see ## Where it runs
    tokens = ("scoped_session",)
    requires = (("current_task",), SQLALCHEMY_IMPORT)

    def visit_Call(self, node: cst.Call) -> None:
        is_async = self.ctx.resolves_to(node.func, ASYNC_SCOPED_SESSIONS)
        if not is_async and not self.ctx.resolves_to(node.func, SYNC_SCOPED_SESSIONS):
            return
        scopefunc = scopefunc_of(node)
        if scopefunc is None or not self._task_scoped(scopefunc):
            return
        name = self._bound_name(node)
        if name is None or self._removed(name):
            return
        call = f"await {name}.remove()" if is_async else f"{name}.remove()"
        self.report(node, self.message.format(name=name, call=call))

    def _task_scoped(self, expr: cst.BaseExpression) -> bool:
        """``current_task``, ``lambda: id(current_task())``, or a module function
        that returns something of ``current_task()``: one key per task."""
        if self.ctx.resolves_to(expr, CURRENT_TASK):
            return True
        if isinstance(expr, cst.Lambda):
            return self._calls_current_task(expr.body)
        if isinstance(expr, cst.Name):
            bindings = self.ctx.scope.lookup(expr.value)
            if len(bindings) == 1 and bindings[0].kind is BindingKind.DEF:
                function = bindings[0].node
                if isinstance(function, cst.FunctionDef) and function.asynchronous is None:
                    return any(
                        isinstance(n, cst.Return)
                        and n.value is not None
                        and self._calls_current_task(n.value)
                        for n in subtree(function.body)
                    )
        return False

    def _calls_current_task(self, expr: cst.BaseExpression) -> bool:
        # Names in a lambda's or a module function's body resolve to the module's
        # imports (neither binds ``current_task`` itself).
        module = self.ctx.scope.module
        return any(
            isinstance(n, cst.Call) and self.ctx.resolves_to(n.func, CURRENT_TASK, module)
            for n in subtree(expr)
        )

    def _bound_name(self, node: cst.Call) -> str | None:
        """The name or attribute the construction is stored on, when it outlives a
        call: a module or class name, a ``global``/``nonlocal`` one, an attribute."""
        parent = self.ctx.parent
        if isinstance(parent, cst.Assign) and parent.value is node and len(parent.targets) == 1:
            target: cst.BaseExpression = parent.targets[0].target
        elif isinstance(parent, cst.AnnAssign) and parent.value is node:
            target = parent.target
        else:
            return None  # returned, passed on, several targets: not ours to follow
        if isinstance(target, cst.Attribute):
            return target.attr.value
        if not isinstance(target, cst.Name):
            return None
        scope = self.ctx.scope
        name = target.value
        if scope.kind in (ScopeKind.MODULE, ScopeKind.CLASS):
            return name
        if name in scope.global_names or name in scope.nonlocal_names:
            return name
        return None  # a local: the registry goes with the call

    def _removed(self, name: str) -> bool:
        if name in self.ctx.config.project.scoped_removals:
            return True
        # The file itself, for an analysis without a project index (a snippet, an
        # editor buffer not saved yet).
        names: frozenset[str] | None = getattr(self, "_here", None)
        if names is None:
            source = self.ctx.source
            names = removal_names(source if source is not None else self.ctx.module.code.encode())
            self._here = names
        return name in names
