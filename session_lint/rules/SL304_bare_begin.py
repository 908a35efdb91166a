from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.walker import subtree
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_session
from session_lint.semantics.transactions import BEGIN_METHODS


class BareBegin(Rule):
    """
    ## What it does
    Finds `await session.begin()` (or `session.begin()`, `begin_nested()`) used as a
    statement or assigned to a name, instead of as a context manager:
    `async with session.begin():`.

    ## Why is this bad?
    A transaction begun by hand is ended by hand: every path — including every
    exception — must reach `commit()` or `rollback()`. One that does not leaves the
    connection *idle in transaction*, holding its locks and, behind a transaction
    pooler, pinning a server connection that no other client can use until the
    session is closed. `async with session.begin():` commits when the block ends
    and rolls back when it raises, on every path.

    On an `AsyncSession`, `session.begin()` without `await` does not even begin:
    it builds the context manager and drops it.

    ## Known problems
    A savepoint kept in a name and ended by hand (`savepoint = await
    session.begin_nested()`, then `await savepoint.rollback()` or `.commit()`
    somewhere in the function) is not reported: a savepoint always sits inside
    an outer transaction, which rolls it back with everything else when an
    exception leaves the block and releases it when it commits, so no path leaves
    it open. A real-code corpus package (`docs/corpus.md`) does this on purpose to
    keep one failed row from aborting a batch.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def transfer(session: AsyncSession, source, target, amount):
        await session.begin()
        source.balance -= amount
        target.balance += amount
        await session.commit()
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import AsyncSession

    async def transfer(session: AsyncSession, source, target, amount):
        async with session.begin():
            source.balance -= amount
            target.balance += amount
    ```

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: tests and migrations
    begin and roll back by hand to control the transaction (a savepoint per test, a
    migration's own steps). `rule-roles` widens it (docs/roles.md).
    """

    code = "SL304"
    name = "bare-begin"
    message = (
        "`{call}()` outside `async with`: a failure before `commit()`/`rollback()` leaves "
        "the transaction open; use `async with {call}():`"
    )
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("begin",)

    requires = (SESSION,)  # and a session

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value in BEGIN_METHODS):
            return
        chain = self.ctx.ancestor_chain()
        parent = chain[-1] if chain else None
        awaited = isinstance(parent, cst.Await)
        holder = chain[-2] if awaited and len(chain) > 1 else parent
        # A statement of its own, or the awaited result kept in a name.
        if not (
            isinstance(holder, cst.Expr)
            or (awaited and isinstance(holder, (cst.Assign, cst.AnnAssign)))
        ):
            return
        if not is_session(self.ctx, func.value):
            return
        if func.attr.value == "begin_nested" and self._savepoint_ended(holder):
            return  # see ## Known problems
        call = self.ctx.module.code_for_node(func)
        self.report(node, self.message.format(call=call))

    def _savepoint_ended(self, holder: cst.CSTNode | None) -> bool:
        """``name = await session.begin_nested()`` and, in the same function,
        ``name.rollback()`` or ``name.commit()``."""
        if not (
            isinstance(holder, cst.Assign)
            and len(holder.targets) == 1
            and isinstance(holder.targets[0].target, cst.Name)
        ):
            return False
        name = holder.targets[0].target.value
        function = self.ctx.function
        if function is None:
            return False
        return any(
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value in ("rollback", "commit")
            and isinstance(node.func.value, cst.Name)
            and node.func.value.value == name
            for node in subtree(function.body)
        )
