from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.walker import iter_nodes
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import head_name, is_async_session
from session_lint.semantics.transactions import WRITE_METHODS

# Session calls that make a ``try`` block session work worth guarding.
_WORK = WRITE_METHODS | {"commit", "execute", "scalar", "scalars", "get"}


class SwallowedSessionError(Rule):
    """
    ## What it does
    Finds an `except` clause around work on an `AsyncSession` that rolls the
    session back and then lets the caller carry on: it neither re-raises nor raises
    another exception, and returns nothing (or `None`).

    - In a yield dependency or an `@asynccontextmanager` (an `except` around its
      `yield`), it is always reported: the code that used the session never learns
      that its work failed.
    - Elsewhere, the `try` block must write or commit through the session.

    ## Why is this bad?
    `except SQLAlchemyError: await session.rollback(); log.exception(...); return
    None` turns a failed write into a normal return. The caller goes on as if the
    write happened: it answers `200 OK`, sends the e-mail, enqueues the next step.
    In a dependency (`yield session` inside `try`/`except`), FastAPI's request
    handler raised, the dependency swallowed it, and the client may get a success
    for work that was rolled back.

    ## Known problems
    A handler that returns a value (`return False`, an error object) is not
    reported: whether every caller checks it is not followed across calls yet. A
    handler in a loop that moves on (`continue`, `break`) is taken to record the
    failure and is not reported either, nor is one that keeps the exception for
    the code after the `try` (`insert_error = error`, `errors.append(error)`): on
    the real-code corpus (`docs/corpus.md`) that was a get-or-create race that
    re-raises the kept error when no other caller's row exists. Outside a
    dependency, a handler that catches only constraint conflicts
    (`IntegrityError`, a driver's `UniqueViolationError`) and carries on, without
    returning, to more statements after the `try` is not reported either:
    on the corpus each was an idempotent insert (assigning a label that another
    request assigned first), where the row the caller wanted exists.

    ## Example
    ```python
    import logging

    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import AsyncSession

    log = logging.getLogger(__name__)


    async def rename(session: AsyncSession, user, name):
        try:
            user.name = name
            await session.commit()
        except SQLAlchemyError:
            await session.rollback()
            log.exception("rename failed")
    ```

    Use instead:
    ```python
    import logging

    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import AsyncSession

    log = logging.getLogger(__name__)


    async def rename(session: AsyncSession, user, name):
        try:
            user.name = name
            await session.commit()
        except SQLAlchemyError:
            await session.rollback()
            log.exception("rename failed")
            raise
    ```

    ## Where it runs
    `app` files only: a test or a script may swallow an error on purpose.
    `rule-roles` widens it (docs/roles.md).
    """

    code = "SL307"
    name = "swallowed-session-error"
    message = (
        "`except` rolls `{session}` back and carries on: the caller is not told its "
        "work failed and goes on as if the write happened; re-raise (`raise`) or raise "
        "an error the caller must handle"
    )
    dependency_message = (
        "`except` around the `yield` rolls `{session}` back and does not re-raise: the "
        "code that used the session never learns its work failed; add `raise`"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("rollback",)
    requires = (SESSION, ("except",))

    def visit_Try(self, node: cst.Try) -> None:
        around_yield = any(isinstance(n, cst.Yield) for n in iter_nodes(node.body))
        for handler in node.handlers:
            session = self._rolled_back(handler)
            if session is None or _raises(handler) or _returns_a_value(handler):
                continue
            if around_yield:
                self.report(handler, self.dependency_message.format(session=session))
            elif (
                _works_on(node.body, session)
                and not _keeps_the_error(handler)
                and not (_only_constraint_conflicts(handler) and self._carries_on(node))
            ):
                self.report(handler, self.message.format(session=session))

    def _carries_on(self, node: cst.Try) -> bool:
        """More statements of the function run after the ``try`` (the work goes on)."""
        path = [*self.ctx.ancestor_chain(), node]
        for index in range(len(path) - 2, -1, -1):
            block = path[index]
            if isinstance(block, cst.FunctionDef):
                return False
            if isinstance(block, cst.IndentedBlock):
                child = path[index + 1]
                body = list(block.body)
                if any(s is child for s in body[:-1]):
                    return True
        return False

    def _rolled_back(self, handler: cst.ExceptHandler) -> str | None:
        """The async session the handler rolls back."""
        for sub in iter_nodes(handler.body):
            if (
                isinstance(sub, cst.Await)
                and isinstance(sub.expression, cst.Call)
                and isinstance(sub.expression.func, cst.Attribute)
                and sub.expression.func.attr.value == "rollback"
                and isinstance(sub.expression.func.value, cst.Name)
                and is_async_session(self.ctx, sub.expression.func.value)
            ):
                return sub.expression.func.value.value
        return None


def _only_constraint_conflicts(handler: cst.ExceptHandler) -> bool:
    """``except IntegrityError:`` (or a driver's ``UniqueViolationError``) and
    nothing broader, with no ``return`` (the caller checks that more follows):
    the insert met a row that is already there, the deliberate end of an
    idempotent insert (see ## Known problems)."""
    caught = handler.type
    if caught is None or any(isinstance(n, cst.Return) for n in iter_nodes(handler.body)):
        return False
    names = [e.value for e in caught.elements] if isinstance(caught, cst.Tuple) else [caught]
    return all(
        (head := head_name(name)) is not None
        and head.endswith(("IntegrityError", "UniqueViolation", "UniqueViolationError"))
        for name in names
    )


def _raises(handler: cst.ExceptHandler) -> bool:
    """A ``raise``, or a ``continue``/``break``: a loop that moves on to its next
    item after recording the failure is handling it, not hiding it."""
    return any(
        isinstance(n, (cst.Raise, cst.Continue, cst.Break)) for n in iter_nodes(handler.body)
    )


def _returns_a_value(handler: cst.ExceptHandler) -> bool:
    """A ``return`` of something other than ``None``: an error value the caller
    may check."""
    for sub in iter_nodes(handler.body):
        if isinstance(sub, cst.Return) and sub.value is not None:
            if not (isinstance(sub.value, cst.Name) and sub.value.value == "None"):
                return True
    return False


def _keeps_the_error(handler: cst.ExceptHandler) -> bool:
    """``except IntegrityError as error: ...; insert_error = error`` (or
    ``errors.append(error)``): the exception is kept for the code after the
    ``try``, which decides (a get-or-create race re-raises it when no row won)."""
    if handler.name is None or not isinstance(handler.name.name, cst.Name):
        return False
    caught = handler.name.name.value

    def is_caught(expr: cst.BaseExpression | None) -> bool:
        return isinstance(expr, cst.Name) and expr.value == caught

    for sub in iter_nodes(handler.body):
        if isinstance(sub, (cst.Assign, cst.AnnAssign)) and is_caught(sub.value):
            return True
        if (
            isinstance(sub, cst.Call)
            and isinstance(sub.func, cst.Attribute)
            and sub.func.attr.value in ("append", "add")
            and any(is_caught(a.value) for a in sub.args)
        ):
            return True
    return False


def _works_on(body: cst.BaseSuite, session: str) -> bool:
    return any(
        isinstance(sub, cst.Call)
        and isinstance(sub.func, cst.Attribute)
        and sub.func.attr.value in _WORK
        and isinstance(sub.func.value, cst.Name)
        and sub.func.value.value == session
        for sub in iter_nodes(body)
    )
