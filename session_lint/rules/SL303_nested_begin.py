from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_session
from session_lint.semantics.transactions import (
    AUTOBEGIN_METHODS,
    ENDING_METHODS,
    enclosing_transactions,
    function_ancestors,
    method_calls,
    session_key,
    statement_body,
    transaction_keys,
    walk_with_ancestors,
)


class NestedBegin(Rule):
    """
    ## What it does
    Finds `session.begin()` where the session already has a transaction: inside an
    `async with session.begin():` (or `begin_nested()`, or `async with
    factory.begin() as session:`) block, or after a statement that autobegan one —
    `execute()`, `scalar()`, `scalars()`, `get()`, `add()`, `merge()`, `delete()`,
    `refresh()`, `stream()` … on the same session, with no `commit()`, `rollback()`
    or `close()` since — in straight-line code.

    ## Why is this bad?
    A session has one transaction at a time. Any query or `add()` starts one
    implicitly (autobegin), and `begin()` while one is open raises
    `sqlalchemy.exc.InvalidRequestError: A transaction is already begun on this
    Session.` The error shows up only when that path runs, often first in
    production. `begin()` after `commit()` or `rollback()` is fine, and so is
    `begin_nested()` (a savepoint) inside a transaction.

    ## Example
    ```python
    from session_runtime import get_session

    async def rename(user_id, name):
        async with get_session() as session:
            user = await session.get(User, user_id)
            async with session.begin():
                user.name = name
    ```

    Use instead:
    ```python
    from session_runtime import get_session

    async def rename(user_id, name):
        async with get_session() as session:
            async with session.begin():
                user = await session.get(User, user_id)
                user.name = name
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): the second `begin()` raises
    `InvalidRequestError` at run time, in a test or a migration as in the app.

    ## Fix safety
    Where the inner `async with session.begin():` is nested lexically in another
    transaction block on the same session, the fix turns it into
    `async with session.begin_nested():` (a savepoint). It is unsafe: an exception
    in the inner block then rolls back to the savepoint instead of failing the
    whole transaction. After an autobegin there is no fix: where the transaction
    should start is the author's decision.
    """

    code = "SL303"
    name = "nested-begin"
    message = (
        "`{call}()` inside an open `{key}.begin()` block: SQLAlchemy raises "
        "`InvalidRequestError: A transaction is already begun on this Session.`; use "
        "`{key}.begin_nested()` for a savepoint"
    )
    autobegin_message = (
        "`{call}()` after `{key}.{method}()` autobegan a transaction: SQLAlchemy raises "
        "`InvalidRequestError: A transaction is already begun on this Session.`; begin "
        "before the first query, or commit first"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("begin",)

    requires = (SESSION,)  # and a session

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "begin"):
            return
        if not is_session(self.ctx, func.value):
            return
        key = session_key(func.value)
        if key is None:
            return
        call = f"{key}.begin"
        chain = function_ancestors(self.ctx)
        if any(k == key for _, k in enclosing_transactions(self.ctx)):
            self.report(node, self.message.format(call=call, key=key), fix=self._fix(node, chain))
            return
        method = self._autobegun_by(chain, key)
        if method is not None:
            self.report(node, self.autobegin_message.format(call=call, key=key, method=method))

    def _fix(self, node: cst.Call, chain: Sequence[cst.CSTNode]) -> Fix | None:
        if not chain or not isinstance(chain[-1], cst.WithItem):
            return None
        assert isinstance(node.func, cst.Attribute)
        new = node.with_changes(func=node.func.with_changes(attr=cst.Name("begin_nested")))
        return Fix.replace(node, new, Applicability.UNSAFE, description="use `begin_nested()`")

    def _autobegun_by(self, chain: Sequence[cst.CSTNode], key: str) -> str | None:
        """The method that autobegan the open transaction, if straight-line code shows one."""
        for i in range(len(chain) - 1, 0, -1):
            holder = chain[i - 1]
            if isinstance(holder, cst.With) and self._binds(holder, key):
                return None  # the session was opened here: nothing ran on it before
            body = statement_body(holder)
            if body is None:
                continue
            child = chain[i]
            index = next((j for j, stmt in enumerate(body) if stmt is child), None)
            if index is None:
                continue
            for stmt in reversed(body[:index]):
                verdict = self._statement(stmt, key)
                if verdict is not None:
                    return verdict or None
        return None

    def _statement(self, stmt: cst.BaseStatement, key: str) -> str | None:
        """What an earlier statement says: a method name (it autobegan), "" (it ended
        the transaction, or may have: stop), or None (nothing to say: look further)."""
        if isinstance(stmt, cst.SimpleStatementLine):
            last: str | None = None
            for node, _ in walk_with_ancestors([stmt]):
                if isinstance(node, cst.AssignTarget) and session_key(node.target) == key:
                    return ""  # a new session under the same name
            for call in method_calls(stmt):
                if call.key == key and (
                    call.method in AUTOBEGIN_METHODS or call.method in ENDING_METHODS
                ):
                    last = call.method
            if last is None:
                return None
            return "" if last in ENDING_METHODS else last
        # A compound statement may or may not run its body: it cannot prove an
        # autobegin, but anything in it that may end the transaction stops the search.
        for node, _ in walk_with_ancestors([stmt]):
            if isinstance(node, cst.With) and key in transaction_keys(self.ctx, node):
                return ""
            if isinstance(node, cst.AssignTarget) and session_key(node.target) == key:
                return ""
        for call in method_calls(stmt):
            if call.key == key and call.method in ENDING_METHODS | {"begin"}:
                return ""
        return None

    @staticmethod
    def _binds(node: cst.With, key: str) -> bool:
        return any(
            item.asname is not None
            and isinstance(item.asname.name, (cst.Name, cst.Attribute))
            and session_key(item.asname.name) == key
            for item in node.items
        )
