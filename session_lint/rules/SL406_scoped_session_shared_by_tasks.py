from __future__ import annotations

import libcst as cst

from session_lint.core.scopes import BindingKind
from session_lint.known import ASYNC_SCOPED_SESSIONS
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import scopefunc_of

CONTEXT_VAR = frozenset({"contextvars.ContextVar"})


class ScopedSessionSharedByTasks(Rule):
    """
    ## What it does
    Finds an `async_scoped_session(factory, scopefunc=...)` whose scope is read from
    a `ContextVar`: `scopefunc=request_id.get`, a `lambda: request_id.get()`, or a
    function that returns one.

    ## Why is this bad?
    `asyncio.create_task()` (and `gather`, `TaskGroup`, FastAPI's background work
    started from a request) copies the current context into the new task. Every
    task started while a request runs then reads the same ContextVar value, gets
    the same scope, and so the request's own `AsyncSession`. An `AsyncSession` is
    not safe for concurrent use: two tasks using it at once fail with
    `InvalidRequestError: This session is provisioning a new connection; concurrent
    operations are not permitted` (or a driver's "another operation is in
    progress"), and a task that outlives the request uses a session the request
    has already closed.

    `scopefunc=asyncio.current_task` is the form SQLAlchemy documents: each task
    gets its own session, and must close it (`await scoped.remove()`) when done.
    That is why there is no fix: scoping by task changes which session every caller
    sees, and each task must then remove its own.

    ## Example
    ```python
    from contextvars import ContextVar

    from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker

    request_id: ContextVar[str] = ContextVar("request_id")
    factory = async_sessionmaker(expire_on_commit=False)
    Session = async_scoped_session(factory, scopefunc=request_id.get)
    ```

    Use instead:
    ```python
    from asyncio import current_task

    from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker

    factory = async_sessionmaker(expire_on_commit=False)
    Session = async_scoped_session(factory, scopefunc=current_task)
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): the sharing happens wherever
    tasks are started.
    """

    code = "SL406"
    name = "scoped-session-shared-by-tasks"
    message = (
        "`async_scoped_session` scoped by the ContextVar `{var}`: every task started "
        "during a request inherits the context, so it gets the request's AsyncSession "
        "(`InvalidRequestError: ... concurrent operations are not permitted`); scope it "
        "by task with `scopefunc=asyncio.current_task`"
    )
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("async_scoped_session",)
    requires = (("ContextVar",),)

    def visit_Call(self, node: cst.Call) -> None:
        if not self.ctx.resolves_to(node.func, ASYNC_SCOPED_SESSIONS):
            return
        scopefunc = scopefunc_of(node)
        if scopefunc is None:
            return
        var = self._context_var_read(scopefunc)
        if var is not None:
            self.report(scopefunc, self.message.format(var=var))

    def _context_var_read(self, expr: cst.BaseExpression) -> str | None:
        """The ContextVar whose value ``expr`` (a scope function) returns."""
        if isinstance(expr, cst.Attribute) and expr.attr.value == "get":
            return self._context_var(expr.value)
        if isinstance(expr, cst.Lambda):
            return self._read_call(expr.body)
        if isinstance(expr, cst.Name):
            bindings = self.ctx.scope.lookup(expr.value)
            if len(bindings) == 1 and bindings[0].kind is BindingKind.DEF:
                function = bindings[0].node
                if isinstance(function, cst.FunctionDef) and function.asynchronous is None:
                    return self._returned(function)
        return None

    def _returned(self, function: cst.FunctionDef) -> str | None:
        """The ContextVar a one-statement ``def f(): return var.get()`` reads."""
        body = function.body
        if not isinstance(body, cst.IndentedBlock) or len(body.body) != 1:
            return None
        statement = body.body[0]
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            return None
        returned = statement.body[0]
        if not isinstance(returned, cst.Return) or returned.value is None:
            return None
        return self._read_call(returned.value)

    def _read_call(self, expr: cst.BaseExpression) -> str | None:
        if (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value == "get"
        ):
            return self._context_var(expr.func.value)
        return None

    def _context_var(self, expr: cst.BaseExpression) -> str | None:
        """``expr``'s name when every binding of it is ``ContextVar(...)``."""
        if not isinstance(expr, cst.Name):
            return None
        bindings = self.ctx.scope.lookup(expr.value)
        if not bindings:
            return None
        for binding in bindings:
            value = binding.value
            if not (
                binding.kind is BindingKind.ASSIGNMENT
                and isinstance(value, cst.Call)
                and self.ctx.resolves_to(value.func, CONTEXT_VAR)
            ):
                return None
        return expr.value
