from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.scopes import ScopeKind
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.ownership import (
    Ownership,
    injected_sessions,
    is_route_handler,
    is_test_code,
    ownership,
)

TRANSACTION_METHODS = frozenset({"begin", "commit", "rollback"})
# Methods that exist to manage a transaction: a unit of work's context manager, or a
# thin ``commit()`` wrapper, decides nothing of its own.
_CONTEXT_METHODS = frozenset({"__aenter__", "__aexit__", "__enter__", "__exit__"})


class BorrowedSessionTransaction(Rule):
    """
    ## What it does
    Finds `begin()`, `commit()` or `rollback()` called on a session the function
    received — a parameter annotated `AsyncSession`/`Session` or named as configured
    in `session-names`, or `self.session` — in a service, repository or helper (any
    function that is not a route handler, a test or a pytest fixture).

    ## Why is this bad?
    The caller opened the session and owns its transaction. A helper that commits
    ends the caller's transaction half-way: the caller's earlier writes are
    committed even if its later steps fail, and a caller inside `async with
    session.begin():` finds its transaction closed under it (`InvalidRequestError:
    Can't operate on closed transaction inside context manager`). A helper that
    calls `begin()` fails whenever the caller has already begun or autobegun
    (`InvalidRequestError: A transaction is already begun on this Session.`).

    Keep transaction boundaries where the session is opened — the route handler,
    the background job — and let services only read and write. A service that needs
    a unit it can undo on its own uses a savepoint: `async with
    session.begin_nested():`.

    ## Known problems
    Whether a function may commit the session its caller gave it is a convention
    each project sets for itself. On the pinned corpus of real packages
    (`docs/corpus.md`) this rule reported 93 places before it was narrowed and 42
    after; read one by one, they were libraries whose API commits on purpose
    (active-record `create()`/`update()`), helpers that begin the transaction
    their callers leave to them, and cleanups — none a clear bug. It therefore
    runs only when selected by its full code: `select = ["SL", "SL302"]` or
    `extend-select = ["SL302"]`. A `rollback()` in an `except` handler (the session
    is unusable after a failed flush until rolled back) and a commit under `if
    <parameter>:` (the caller asks for it) are never reported.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def create_order(session: AsyncSession, order):
        session.add(order)
        await session.commit()
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def create_order(session: AsyncSession, order):
        session.add(order)
        await session.flush()
    ```

    ## Options
    - `session-names`

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test helper that
    commits the fixture's session, or a migration step on the connection it is given,
    owns that transaction on purpose. `rule-roles` widens it (docs/roles.md).
    """

    code = "SL302"
    name = "borrowed-session-transaction"
    message = (
        "`{call}()` on a session this function received: the caller owns the transaction; "
        "leave begin/commit/rollback to the code that opened the session (use "
        "`begin_nested()` for a savepoint)"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("begin", "commit", "rollback")
    # Whether a callee may commit is a project's convention: see "Known problems".
    opt_in = True

    requires = (SESSION,)  # and a session

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value in TRANSACTION_METHODS):
            return
        scope = self.ctx.scope
        function = self.ctx.function
        if scope.kind is not ScopeKind.FUNCTION or function is None or scope.parent is None:
            return
        if ownership(self.ctx, func.value, function) is not Ownership.BORROWED:
            return
        name = function.name.value
        if name in _CONTEXT_METHODS or name == func.attr.value:
            return
        if is_route_handler(self.ctx, function, scope.parent) or is_test_code(
            self.ctx, function, scope.parent
        ):
            return
        if isinstance(func.value, cst.Name) and func.value.value in injected_sessions(
            self.ctx, function, scope
        ):
            return  # a dependency's session: the request's, not a caller's
        if func.attr.value == "rollback" and _in_except_handler(self.ctx.ancestor_chain()):
            return  # cleanup after a failed flush: the session is unusable until then
        if _guarded_by_parameter(self.ctx.ancestor_chain(), function):
            return  # ``if commit: await session.commit()``: the caller decides
        call = self.ctx.module.code_for_node(func)
        self.report(node, self.message.format(call=call))


def _in_except_handler(ancestors: Sequence[cst.CSTNode]) -> bool:
    return any(isinstance(node, cst.ExceptHandler) for node in ancestors)


def _guarded_by_parameter(ancestors: Sequence[cst.CSTNode], function: cst.FunctionDef) -> bool:
    """The call sits under ``if <parameter>:`` (or ``if not <parameter>``, ``if
    <parameter> and …``): the function commits only when its caller asks it to."""
    params = function.params
    names = {
        p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)
    }
    for node in ancestors:
        if isinstance(node, cst.If):
            test = node.test
            while isinstance(test, cst.UnaryOperation):
                test = test.expression
            operands = (
                [test.left, test.right] if isinstance(test, cst.BooleanOperation) else [test]
            )
            if any(isinstance(o, cst.Name) and o.value in names for o in operands):
                return True
    return False
