from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SQLALCHEMY_IMPORT
from session_lint.core.scopes import dotted_name
from session_lint.core.walker import children
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.fixes.edits import call_with, keyword_arg
from session_lint.known import (
    ASYNC_SESSION_CLASSES,
    ASYNC_SESSIONMAKERS,
    SYNC_SESSIONMAKERS,
)
from session_lint.project.roles import APP_ONLY
from session_lint.rules.base import Rule

_KEYWORD = "expire_on_commit"


class AsyncExpireOnCommit(Rule):
    """
    ## What it does
    Finds async session factories — `async_sessionmaker(...)`, or
    `sessionmaker(class_=AsyncSession, ...)` — created without
    `expire_on_commit=False` (left out, or set to `True`), in any module, the
    engine modules included.

    A session built by hand (`AsyncSession(...)`) is reported by SL101
    (direct-session) instead, and a factory called with `**kwargs` is skipped (the
    keyword may be in there).

    ## Why is this bad?
    By default `commit()` expires every object the session loaded. Reading an
    attribute of such an object afterwards loads it again, with IO that an async
    session cannot do implicitly: the read raises `MissingGreenlet: greenlet_spawn
    has not been called; can't call await_only() here` (`await_()` on SQLAlchemy
    2.1) — typically when a route handler returns the object it just committed.
    With `expire_on_commit=False` the objects keep the values they had, and a fresh
    read is explicit (`await session.refresh(obj)`).

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db.engine import engine

    SessionLocal = async_sessionmaker(engine)
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db.engine import engine

    SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
    ```

    ## Where it runs
    `app` files only, not `test`, `migration` or `script` ones: a test's or a script's
    session factory serves that test or that run, and a `MissingGreenlet` there fails
    the run, not a request in production. `rule-roles` widens it (docs/roles.md).

    ## Fix safety
    The fix adds `expire_on_commit=False` (or turns `True` into `False`), keeping
    the call's layout and comments. It is unsafe: objects then keep their values
    after `commit()` instead of being loaded again, so code that relied on seeing
    values changed by the database (triggers, defaults computed on the server, other
    transactions) must call `await session.refresh(obj)`.
    """

    code = "SL105"
    name = "async-expire-on-commit"
    message = (
        "async session factory without `expire_on_commit=False`: reading an attribute "
        "after `commit()` does implicit IO and raises `MissingGreenlet: greenlet_spawn has "
        "not been called; can't call await_only() here`; pass `expire_on_commit=False`"
    )
    fix_availability = FixAvailability.ALWAYS
    roles = APP_ONLY  # see ## Where it runs
    tokens = ("sessionmaker",)
    requires = (SQLALCHEMY_IMPORT,)  # the names resolve only through such an import

    def visit_Call(self, node: cst.Call) -> None:
        if not self._is_async_factory(node):
            return
        if any(arg.star for arg in node.args):
            return  # ``**options`` may hold the keyword: unknown
        current = next(
            (a for a in node.args if a.keyword is not None and a.keyword.value == _KEYWORD), None
        )
        if current is None:
            if self._configured_later() or self._overridden_per_call():
                return
            fix = Fix.replace(
                node,
                call_with(node, keyword_arg(_KEYWORD, cst.Name("False"))),
                Applicability.UNSAFE,
                description="pass `expire_on_commit=False`",
            )
        elif isinstance(current.value, cst.Name) and current.value.value == "True":
            fix = Fix.replace(
                current.value,
                cst.Name("False"),
                Applicability.UNSAFE,
                description="set `expire_on_commit=False`",
            )
        else:
            return  # ``False``, or a value we cannot see: not ours to judge
        self.report(node, fix=fix)

    def _is_async_factory(self, node: cst.Call) -> bool:
        if self.ctx.resolves_to(node.func, ASYNC_SESSIONMAKERS):
            return True
        return self.ctx.resolves_to(node.func, SYNC_SESSIONMAKERS) and any(
            a.keyword is not None
            and a.keyword.value == "class_"
            and self.ctx.resolves_to(a.value, ASYNC_SESSION_CLASSES)
            for a in node.args
        )

    def _configured_later(self) -> bool:
        """``Factory = async_sessionmaker(); Factory.configure(expire_on_commit=...)``:
        the keyword is set elsewhere in the file."""
        ancestors = self.ctx.ancestor_chain()
        parent = ancestors[-1] if ancestors else None
        if isinstance(parent, cst.Assign) and len(parent.targets) == 1:
            target = dotted_name(parent.targets[0].target)
        elif isinstance(parent, cst.AnnAssign):
            target = dotted_name(parent.target)
        else:
            return False
        return target is not None and target in self._configured_names()

    def _overridden_per_call(self) -> bool:
        """The factory is bound to a name (``self.session_maker = ...``) that the
        project calls with ``expire_on_commit=`` (the project index): its callers
        choose per session, where they read after a commit."""
        ancestors = self.ctx.ancestor_chain()
        parent = ancestors[-1] if ancestors else None
        targets: list[cst.BaseAssignTargetExpression] = []
        if isinstance(parent, cst.Assign):
            targets = [t.target for t in parent.targets]
        elif isinstance(parent, cst.AnnAssign):
            targets = [parent.target]
        overrides = self.ctx.config.project.expire_overrides
        for target in targets:
            name = target.attr.value if isinstance(target, cst.Attribute) else None
            if isinstance(target, cst.Name):
                name = target.value
            if name is not None and name in overrides:
                return True
        return False

    def _configured_names(self) -> frozenset[str]:
        cached: frozenset[str] | None = getattr(self, "_configured", None)
        if cached is None and not (
            self.ctx.may_mention("configure") and self.ctx.may_mention(_KEYWORD)
        ):
            # Neither name in the text: no such call, and no need to search the tree.
            cached = self._configured = frozenset[str]()
        if cached is None:
            found: set[str] = set()
            stack: list[cst.CSTNode] = [self.ctx.module]
            while stack:
                node = stack.pop()
                if (
                    isinstance(node, cst.Call)
                    and isinstance(node.func, cst.Attribute)
                    and node.func.attr.value == "configure"
                    and any(
                        a.keyword is not None and a.keyword.value == _KEYWORD for a in node.args
                    )
                ):
                    name = dotted_name(node.func.value)
                    if name is not None:
                        found.add(name)
                stack.extend(children(node))
            cached = self._configured = frozenset(found)
        return cached
