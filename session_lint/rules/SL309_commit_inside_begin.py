from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.scopes import BindingKind
from session_lint.core.walker import iter_nodes, subtree
from session_lint.project.roles import APP_SCRIPT_AND_MIGRATION
from session_lint.rules.base import Rule
from session_lint.semantics.ownership import injected_sessions, is_route_handler
from session_lint.semantics.transactions import method_call, owning_begin_block

_ENDS = frozenset({"commit", "rollback"})


class CommitInsideBegin(Rule):
    """
    ## What it does
    Finds `commit()` or `rollback()` on a session whose transaction a context
    manager owns, followed by more use of that session before the context manager
    exits. The owner is `async with session.begin():` in the same function,
    `async with factory.begin() as session:`, or a FastAPI dependency of the same
    module that yields its session inside `begin()` (`async with factory() as
    session, session.begin(): yield session`), for a route that receives it.

    ## Why is this bad?
    Ending the transaction by hand leaves the context manager holding a closed
    transaction. The next use of the session raises
    `sqlalchemy.exc.InvalidRequestError: Can't operate on closed transaction inside
    context manager.  Please complete the context manager before emitting further
    commands.` (SQLAlchemy 2.0 and 2.1; `tests/runtime/test_transaction_state.py`
    shows it through pgbouncer). Public threads about this error usually have a
    `begin()` in the dependency and a `commit()` in a route that then adds an audit
    row or refreshes an object.

    Let the context manager commit: drop the `commit()`, or split the work into
    two `begin()` blocks.

    ## Known problems
    A dependency in another module that yields inside `begin()` is not followed
    (the project index records whether a factory commits or begins on exit, not
    which). A `commit()` that is the last use of the session in the block does no
    harm — the context manager finds the transaction closed and returns — and is
    not reported.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def rename(session: AsyncSession, user, name):
        async with session.begin():
            user.name = name
            await session.commit()
            await session.refresh(user)
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def rename(session: AsyncSession, user, name):
        async with session.begin():
            user.name = name
        await session.refresh(user)
    ```

    ## Where it runs
    `app`, `script` and `migration` files: the error is the same everywhere. Not
    `test` files, where a test may provoke it. `rule-roles` widens it
    (docs/roles.md).
    """

    code = "SL309"
    name = "commit-inside-begin"
    message = (
        "`{key}.{method}()` inside the `begin()` block that owns `{key}`'s transaction, and "
        "`{key}` is used again before the block exits: that use raises `InvalidRequestError: "
        "Can't operate on closed transaction inside context manager`; let the block commit"
    )
    roles = APP_SCRIPT_AND_MIGRATION  # see ## Where it runs
    tokens = ("commit", "rollback")
    requires = (("begin",), SESSION)

    def visit_Call(self, node: cst.Call) -> None:
        call = method_call(node)
        if call is None or call.method not in _ENDS or call.key is None:
            return
        key = call.key
        region = self._owner(key)
        if region is None:
            return
        if self._used_after(region, node, key):
            self.report(node, self.message.format(key=key, method=call.method))

    def _owner(self, key: str) -> cst.CSTNode | None:
        """The block whose context manager owns ``key``'s transaction."""
        block = owning_begin_block(self.ctx, key)
        if block is not None:
            return block.body
        function = self.ctx.function
        scope = self.ctx.scope.enclosing_function()
        if function is None or scope is None or scope.parent is None:
            return None
        if not is_route_handler(self.ctx, function, scope.parent):
            return None
        depends = injected_sessions(self.ctx, function, scope).get(key)
        if depends is not None and depends.args and self._yields_inside_begin(depends.args[0].value):
            return function.body
        return None

    def _yields_inside_begin(self, target: cst.BaseExpression) -> bool:
        """A dependency of this module that yields inside a ``begin()`` block."""
        if not isinstance(target, cst.Name):
            return False
        for b in self.ctx.scope.module.bindings.get(target.value, ()):
            if b.kind is BindingKind.DEF and isinstance(b.node, cst.FunctionDef):
                for sub in subtree(b.node.body):
                    if isinstance(sub, cst.With) and any(
                        (found := method_call(item.item)) is not None and found.method == "begin"
                        for item in sub.items
                    ):
                        return any(isinstance(n, cst.Yield) for n in iter_nodes(sub.body))
        return False

    def _used_after(self, region: cst.CSTNode, node: cst.Call, key: str) -> bool:
        """The session is used after ``node`` on the path that follows it inside
        ``region``: the statements after it in its block, then after that block
        in the enclosing ones, up to a ``return``/``raise`` that leaves."""
        path = [*self.ctx.ancestor_chain(), node]
        for index in range(len(path) - 1, -1, -1):
            block = path[index]
            if isinstance(block, cst.IndentedBlock):
                child = path[index + 1]
                body = list(block.body)
                position = next((i for i, s in enumerate(body) if s is child), None)
                if position is None:
                    continue
                for statement in body[position + 1 :]:
                    if _uses(statement, key):
                        return True
                    if isinstance(statement, cst.SimpleStatementLine) and any(
                        isinstance(small, (cst.Return, cst.Raise)) for small in statement.body
                    ):
                        return False
            if block is region:
                return False
        return False


def _uses(statement: cst.CSTNode, key: str) -> bool:
    for sub in iter_nodes(statement):
        if isinstance(sub, cst.Call):
            found = method_call(sub)
            if found is not None and found.key == key:
                return True
            if any(isinstance(a.value, cst.Name) and a.value.value == key for a in sub.args):
                return True
    return False
