from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from session_lint.core.prefilter import SESSION, Clause, async_session_groups
from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.project.config import Config
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.sessions import is_async_session

# AsyncSession's plain methods, by what they return: awaiting the result raises
# ``TypeError: object <type> can't be used in 'await' expression``. ``begin`` and
# ``begin_nested`` are left out: they return an awaitable transaction.
# tests/runtime/test_await_misuse.py checks this list against the installed
# SQLAlchemy and the error texts against a real database.
SYNC_METHODS: dict[str, str] = {
    "add": "NoneType",
    "add_all": "NoneType",
    "expire": "NoneType",
    "expire_all": "NoneType",
    "expunge": "NoneType",
    "expunge_all": "NoneType",
    "is_modified": "bool",
    "in_transaction": "bool",
    "in_nested_transaction": "bool",
    "get_bind": "Engine",
}
# The coroutine methods whose awaited value is a result object.
RESULT_COROUTINES = frozenset({"execute", "scalars", "stream", "stream_scalars"})
# What is taken from that result: on the coroutine itself each is an AttributeError.
RESULT_ATTRIBUTES = frozenset(
    {
        "all",
        "columns",
        "fetchall",
        "fetchmany",
        "fetchone",
        "first",
        "keys",
        "mappings",
        "one",
        "one_or_none",
        "partitions",
        "rowcount",
        "scalar",
        "scalar_one",
        "scalar_one_or_none",
        "scalars",
        "tuples",
        "unique",
    }
)


class AwaitMisuse(Rule):
    """
    ## What it does
    Finds two mistakes around `await` on an `AsyncSession`:

    - `await` on one of its plain (not coroutine) methods: `add`, `add_all`,
      `expire`, `expire_all`, `expunge`, `expunge_all`, `is_modified`,
      `in_transaction`, `in_nested_transaction`, `get_bind`;
    - a result method taken from `execute()`, `scalars()`, `stream()` or
      `stream_scalars()` before it is awaited: `await session.execute(q).scalars()`
      calls `.scalars()` on the coroutine, since `await` applies to the whole
      expression after it.

    ## Why is this bad?
    Both fail at run time, on the first request that reaches them. Awaiting a plain
    method's result raises `TypeError: object NoneType can't be used in 'await'
    expression` (`bool` for `in_transaction()`, `Engine` for `get_bind()`), after
    the method ran. A result method on the coroutine raises `AttributeError:
    'coroutine' object has no attribute 'scalars'`, and the statement never runs
    (with a `RuntimeWarning: coroutine 'AsyncSession.execute' was never awaited`).

    Only sessions known to be asynchronous are checked: opened with `async with`,
    built by an async factory, or annotated `AsyncSession`.

    ## Example
    ```python
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.models import User


    async def create(session: AsyncSession, user: User) -> list[User]:
        await session.add(user)
        return await session.execute(select(User)).scalars().all()
    ```

    Use instead:
    ```python
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.models import User


    async def create(session: AsyncSession, user: User) -> list[User]:
        session.add(user)
        return (await session.execute(select(User))).scalars().all()
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): the code fails wherever it is.

    ## Fix safety
    Both fixes are safe: they drop the `await` before a plain method, and put the
    `await` around the coroutine call alone. The code before either fix raised on
    every run; after it, it does what it says.
    """

    code = "SL405"
    name = "await-misuse"
    message = "`await` misused on an AsyncSession"
    fix_availability = FixAvailability.ALWAYS
    roles = ALL_ROLES  # see ## Where it runs
    tokens = SESSION  # no session, no finding

    @classmethod
    def prefilter(cls, config: Config) -> tuple[Clause, ...]:
        # An async session (as for SL403), an ``await``, and one of the methods.
        methods = tuple(sorted({*SYNC_METHODS, *RESULT_COROUTINES}))
        return ((*async_session_groups(config), ("await",), methods),)

    def visit_Await(self, node: cst.Await) -> None:
        expression = node.expression
        if (
            isinstance(expression, cst.Call)
            and isinstance(expression.func, cst.Attribute)
            and expression.func.attr.value in SYNC_METHODS
            and is_async_session(self.ctx, expression.func.value)
        ):
            self._sync_method(node, expression, expression.func.attr.value)
            return
        coroutine, taken = _coroutine_under(
            expression, lambda receiver: is_async_session(self.ctx, receiver)
        )
        if coroutine is None or taken is None:
            return
        assert isinstance(coroutine.func, cst.Attribute)
        call = self.ctx.module.code_for_node(coroutine.func)
        awaited = cst.Await(expression=coroutine, lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        new = expression.deep_replace(coroutine, awaited)
        assert isinstance(new, cst.BaseExpression)
        new = new.with_changes(lpar=node.lpar, rpar=node.rpar)
        fix = Fix.replace(
            node,
            new,
            Applicability.SAFE,
            description=f"await `{call}()` before `.{taken}`",
        )
        self.report(
            node,
            f"`.{taken}` is taken from the coroutine `{call}()`, not from its result: "
            f"`AttributeError: 'coroutine' object has no attribute '{taken}'`; "
            f"write `(await {call}(...)).{taken}`",
            fix=fix,
        )

    def _sync_method(self, node: cst.Await, call: cst.Call, method: str) -> None:
        assert isinstance(call.func, cst.Attribute)
        name = self.ctx.module.code_for_node(call.func)
        returned = SYNC_METHODS[method]
        new = call.with_changes(lpar=[*node.lpar, *call.lpar], rpar=[*call.rpar, *node.rpar])
        fix = Fix.replace(node, new, Applicability.SAFE, description="drop the `await`")
        self.report(
            node,
            f"`{name}()` is a plain method of AsyncSession, not a coroutine: awaiting it "
            f"raises `TypeError: object {returned} can't be used in 'await' expression`; "
            "drop the `await`",
            fix=fix,
        )


def _coroutine_under(
    expression: cst.BaseExpression, is_session: Callable[[cst.BaseExpression], bool]
) -> tuple[cst.Call | None, str | None]:
    """The session coroutine call lowest in a chain of result methods
    (``s.execute(q).scalars().all()``), and the attribute taken from it."""
    calls: list[tuple[cst.Call, str]] = []  # each call, and what is taken from it
    node: cst.BaseExpression = expression
    taken: str | None = None
    while True:
        if isinstance(node, cst.Call):
            if taken is not None:
                calls.append((node, taken))
            node, taken = node.func, None
        elif isinstance(node, cst.Attribute) and taken is None:
            taken = node.attr.value
            node = node.value
        else:
            break
    for call, name in reversed(calls):
        func = call.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value in RESULT_COROUTINES
            and name in RESULT_ATTRIBUTES
            and is_session(func.value)
        ):
            return call, name
    return None, None
