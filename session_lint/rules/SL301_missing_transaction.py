from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.core.scopes import BindingKind
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.known import ASYNC_SESSION_CLASSES, EXECUTE_METHODS
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule
from session_lint.semantics.ownership import (
    dependency_manages_transaction,
    injected_sessions,
    is_route_handler,
)
from session_lint.semantics.sessions import (
    is_async_session_source,
    is_session_annotation,
    is_session_source,
    may_end_transaction,
)
from session_lint.semantics.sql import first_positional
from session_lint.semantics.transactions import (
    BEGIN_METHODS,
    WRITE_METHODS,
    blocks_and_withs,
    is_write_statement,
    method_call,
    transaction_keys,
    walk_with_ancestors,
)

# What ends or takes over the transaction in the wrapped region: the fix stays away.
_CONFLICTING = frozenset({"commit", "rollback", "close", "begin", "reset", "invalidate"})


@dataclass(frozen=True)
class SessionBlock:
    """Statements during which this function owns the session ``key``."""

    key: str
    block: cst.IndentedBlock
    start: int  # index of the first statement of the block that runs with the session
    # Injected with ``Depends(...)``: other dependencies of the request may already
    # have run a statement on it, so ``begin()`` could raise (no fix).
    injected: bool = False


class MissingTransaction(Rule):
    """
    ## What it does
    Finds writes — `add()`, `add_all()`, `delete()`, `merge()`, `flush()`, or
    `execute()` of an `insert`/`update`/`delete` construct or of write SQL — on an
    `AsyncSession` this function owns (opened here: `async with get_session() as
    session:`, `session = factory()`; or a route handler's session injected with
    `Depends(...)`) that are outside `async with session.begin():` and not followed by
    `commit()`. One finding per session, at the first such write.

    ## Why is this bad?
    The write runs in a transaction SQLAlchemy began on its own (autobegin), and
    nothing commits it: when the session closes, it rolls back, and the change is
    silently lost. The request still returns 200. Behind a transaction pooler, the
    open transaction also pins a server connection until the session closes.

    `async with session.begin():` commits when the block ends and rolls back when
    it raises; an explicit `await session.commit()` after the writes also works.

    ## Known problems
    Sessions handed to other code after the write (returned, passed as an argument)
    are not reported: that code may commit. A route handler's session is not
    reported when the dependency that provides it begins or commits itself: one
    defined in the same module that calls `begin()` or `commit()`, or one the
    project index saw begin or commit on exit (`async with factory() as s,
    s.begin(): yield s`; a `commit()` after the `yield`), or whose exit it could
    not see. A dependency from another package the index does not read is taken
    not to commit. Synchronous sessions are not checked.

    ## Example
    ```python
    from session_runtime import get_session

    async def rename(user_id, name):
        async with get_session() as session:
            user = await session.get(User, user_id)
            user.name = name
            session.add(user)
    ```

    Use instead:
    ```python
    from session_runtime import get_session

    async def rename(user_id, name):
        async with get_session() as session:
            async with session.begin():
                user = await session.get(User, user_id)
                user.name = name
                session.add(user)
    ```

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: tests, migrations and
    scripts own their sessions and commit on purpose (test helpers, data migrations,
    seed scripts). `rule-roles` widens it (docs/roles.md).

    ## Fix safety
    The fix wraps the statements from the first unguarded write to the end of the
    session's block in `async with session.begin():`, so they are committed when
    the block ends. It is unsafe: writes that were silently rolled back until now
    are committed. It is offered only when nothing touches the session before the
    first write (a `begin()` after an autobegin would raise `A transaction is already
    begun on this Session`), when the write is a statement of the session's block
    itself, and when the wrapped statements neither commit, roll back nor close the
    session.
    """

    code = "SL301"
    name = "missing-transaction"
    message = (
        "write on `{key}` outside `async with {key}.begin():` and never committed: the "
        "session closes and rolls it back, and the change is silently lost"
    )
    fix_availability = FixAvailability.SOMETIMES
    roles = APP_ONLY  # see ## Where it runs
    tokens = SESSION  # no session, no finding

    # Only ``async def`` bodies are checked, and a write is one of these calls.
    requires = (("async",), ("add", "delete", "merge", "flush", "execute", "insert", "update"))

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if node.asynchronous is None or not isinstance(node.body, cst.IndentedBlock):
            return
        for block in self._session_blocks(node):
            self._check(block)

    # -- where the function owns a session ---------------------------------------------
    def _session_blocks(self, function: cst.FunctionDef) -> list[SessionBlock]:
        ctx = self.ctx
        body = function.body
        assert isinstance(body, cst.IndentedBlock)
        blocks: list[SessionBlock] = []
        for node in blocks_and_withs(body):
            if isinstance(node, cst.With) and node.asynchronous is not None:
                if not isinstance(node.body, cst.IndentedBlock):
                    continue
                # ``async with factory() as s, s.begin():`` is one transaction block.
                begun = transaction_keys(ctx, node)
                for item in node.items:
                    if item.asname is None or not isinstance(item.asname.name, cst.Name):
                        continue
                    call = method_call(item.item)
                    if call is not None and call.method in BEGIN_METHODS:
                        continue  # factory.begin(): the whole block is a transaction
                    if (
                        is_session_source(ctx, item.item)
                        and item.asname.name.value not in begun
                        and not may_end_transaction(ctx, item.item)
                    ):
                        blocks.append(SessionBlock(item.asname.name.value, node.body, 0))
            elif isinstance(node, cst.IndentedBlock):
                for index, stmt in enumerate(node.body):
                    key = self._assigned_session(stmt)
                    if key is not None:
                        blocks.append(SessionBlock(key, node, index + 1))
        if ctx.scope.parent is not None and is_route_handler(ctx, function, ctx.scope.parent):
            for key, depends in injected_sessions(ctx, function, ctx.scope).items():
                if self._is_async_parameter(key) and not dependency_manages_transaction(
                    ctx, depends
                ):
                    blocks.append(SessionBlock(key, body, 0, injected=True))
        return blocks

    def _assigned_session(self, stmt: cst.BaseStatement) -> str | None:
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return None
        small = stmt.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            target, value = small.targets[0].target, small.value
        elif isinstance(small, cst.AnnAssign) and small.value is not None:
            target, value = small.target, small.value
        else:
            return None
        if not isinstance(target, cst.Name) or not isinstance(value, cst.Call):
            return None
        call = method_call(value)
        if call is not None and call.method in BEGIN_METHODS:
            return None
        if may_end_transaction(self.ctx, value):
            return None
        return target.value if is_async_session_source(self.ctx, value) else None

    def _is_async_parameter(self, name: str) -> bool:
        for b in self.ctx.scope.bindings.get(name, ()):
            if b.kind is BindingKind.PARAM:
                return b.annotation is None or is_session_annotation(
                    self.ctx, b.annotation, self.ctx.scope, ASYNC_SESSION_CLASSES
                )
        return False

    # -- the check ---------------------------------------------------------------------
    def _check(self, block: SessionBlock) -> None:
        statements = block.block.body[block.start :]
        key = block.key
        candidate: tuple[cst.Call, int] | None = None
        for node, ancestors in walk_with_ancestors(statements):
            if self._escapes(node, ancestors, key) and candidate is not None:
                return  # handed on after the write: the receiver may commit
            call = method_call(node) if isinstance(node, cst.Call) else None
            if call is None or call.key != key:
                continue
            if call.method == "commit":
                candidate = None
            elif candidate is None and self._is_write(call.method, call.call):
                if not self._guarded(ancestors, key):
                    top = ancestors[0]
                    index = next(i for i, s in enumerate(block.block.body) if s is top)
                    candidate = (call.call, index)
        if candidate is None:
            return
        write, index = candidate
        if self._reattaches(write, statements, key):
            return
        self.report(write, self.message.format(key=key), fix=self._fix(block, index))

    @staticmethod
    def _reattaches(
        write: cst.Call, statements: Sequence[cst.CSTNode], key: str
    ) -> bool:
        """``session.add(obj)`` then ``session.refresh(obj)``/``session.run_sync(...)``:
        the object is attached to be read (lazy loads), not to be written."""
        call = method_call(write)
        if call is None or call.method not in ("add", "add_all"):
            return False
        for node, _ in walk_with_ancestors(statements):
            other = method_call(node) if isinstance(node, cst.Call) else None
            if other is not None and other.key == key and other.method in ("refresh", "run_sync"):
                return True
        return False

    def _is_write(self, method: str, call: cst.Call) -> bool:
        if method in WRITE_METHODS:
            return True
        if method in EXECUTE_METHODS:
            arg = first_positional(call)
            return arg is not None and is_write_statement(self.ctx, arg.value)
        return False

    def _guarded(self, ancestors: Sequence[cst.CSTNode], key: str) -> bool:
        for i, node in enumerate(ancestors):
            if isinstance(node, cst.With) and i + 1 < len(ancestors):
                if ancestors[i + 1] is node.body and key in transaction_keys(self.ctx, node):
                    return True
        return False

    @staticmethod
    def _escapes(node: cst.CSTNode, ancestors: Sequence[cst.CSTNode], key: str) -> bool:
        if not (isinstance(node, cst.Name) and node.value == key and ancestors):
            return False
        parent = ancestors[-1]
        if isinstance(parent, cst.Arg) and parent.value is node:
            return True
        return isinstance(parent, (cst.Return, cst.Yield, cst.Element, cst.Assign)) and not (
            isinstance(parent, cst.Assign) and parent.value is not node
        )

    # -- the fix -----------------------------------------------------------------------
    def _fix(self, block: SessionBlock, index: int) -> Fix | None:
        if block.injected:
            return None
        key = block.key
        body = list(block.block.body)
        before, region = body[block.start : index], body[index:]
        if self._touches(before, key, any_use=True) or self._touches(region, key):
            return None
        first = region[0]
        # Comments above the first wrapped statement stay above the new block.
        leading = getattr(first, "leading_lines", ())
        if leading:
            region[0] = first.with_changes(leading_lines=())
        wrapped = cst.With(
            items=[
                cst.WithItem(
                    item=cst.Call(func=cst.Attribute(value=cst.Name(key), attr=cst.Name("begin")))
                )
            ],
            body=cst.IndentedBlock(body=region),
            asynchronous=cst.Asynchronous(),
            leading_lines=leading,
        )
        new_block = block.block.with_changes(body=[*body[:index], wrapped])
        return Fix.replace(
            block.block,
            new_block,
            Applicability.UNSAFE,
            description=f"wrap the writes in `async with {key}.begin():`",
        )

    def _touches(
        self, statements: Sequence[cst.CSTNode], key: str, *, any_use: bool = False
    ) -> bool:
        for node, ancestors in walk_with_ancestors(statements):
            if isinstance(node, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                return True  # a nested scope may use the session: stay away
            if any_use and isinstance(node, cst.Name) and node.value == key:
                return True
            if isinstance(node, cst.Call):
                call = method_call(node)
                if call is not None and call.key == key and call.method in _CONFLICTING:
                    return True
            if isinstance(node, cst.Name) and node.value == key and ancestors:
                if self._escapes(node, ancestors, key):
                    return True
        return False
