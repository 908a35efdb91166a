"""The shared facts the flow rules stand on: route handlers and ownership,
transaction blocks, write statements, built SQL strings, name uses, task spawners."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import ClassVar, TypeVar

import libcst as cst
import pytest

from session_lint.analyzer import analyze
from session_lint.known import is_write_sql, sql_head
from session_lint.project.config import Config
from session_lint.rules.base import Rule
from session_lint.semantics.ownership import (
    NameUse,
    Ownership,
    injected_sessions,
    is_route_handler,
    name_uses,
    ownership,
)
from session_lint.semantics.sql import built_string, is_constant_like
from session_lint.semantics.tasks import spawned_arguments
from session_lint.semantics.transactions import (
    enclosing_transactions,
    is_write_statement,
)

N = TypeVar("N", bound=cst.CSTNode)


def _run(source: str, node_type: type[N], probe: Callable[[Rule, N], object]) -> list[object]:
    """Call ``probe(rule, node)`` for every ``node_type`` node, with the rule's
    context positioned on it, and collect the answers."""
    answers: list[object] = []

    class ProbeRule(Rule):
        code: ClassVar[str] = "SL999"
        name: ClassVar[str] = "probe"
        message: ClassVar[str] = ""
        tokens: ClassVar[tuple[str, ...]] = ("",)
        # It probes the semantics, whatever the file imports.
        needs_evidence: ClassVar[bool] = False

    def visit(self: Rule, node: N) -> None:
        answers.append(probe(self, node))

    setattr(ProbeRule, f"visit_{node_type.__name__}", visit)
    result = analyze(textwrap.dedent(source).encode(), "app/x.py", Config(), [ProbeRule])
    assert result.errors == []
    return answers


def _functions(source: str, probe: Callable[[Rule, cst.FunctionDef], object]) -> list[object]:
    return _run(source, cst.FunctionDef, probe)


ROUTES = """
from typing import Annotated
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from app.api import router as imported
from app.db import get_db

router = APIRouter()
app = FastAPI()
cache = make_cache()
DbSession = Annotated[AsyncSession, Depends(get_db)]

@router.get("/a")
async def a(session: DbSession): ...

@app.post("/b")
async def b(db=Depends(get_db)): ...

@imported.api_route("/c")
async def c(session: Annotated[AsyncSession, Depends(get_db)], other: int = 1): ...

@cache.get("key")
async def d(session: AsyncSession = Depends(get_db)): ...

async def e(session: AsyncSession): ...
"""


def test_route_handlers_and_injected_sessions() -> None:
    def probe(rule: Rule, node: cst.FunctionDef) -> tuple[str, bool, list[str]]:
        scope = rule.ctx.scope
        assert scope.parent is not None
        return (
            node.name.value,
            is_route_handler(rule.ctx, node, scope.parent),
            sorted(injected_sessions(rule.ctx, node, scope)),
        )

    assert _functions(ROUTES, probe) == [
        ("a", True, ["session"]),
        ("b", True, ["db"]),
        ("c", True, ["session"]),
        ("d", False, ["session"]),
        ("e", False, []),
    ]


OWNERSHIP = """
from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from session_runtime import get_session
from app.db import get_db

router = APIRouter()
factory = async_sessionmaker()

@router.post("/")
async def handler(session: AsyncSession = Depends(get_db)):
    session.add(1)

async def service(session: AsyncSession, db, other):
    session.add(1)
    db.add(1)
    other.add(1)

async def opener():
    async with get_session() as s:
        s.add(1)
    t = factory()
    t.add(1)

    def inner():
        t.add(1)

class Repo:
    async def save(self):
        self.session.add(1)
"""


def test_ownership() -> None:
    def probe(rule: Rule, node: cst.Call) -> object:
        if not (isinstance(node.func, cst.Attribute) and node.func.attr.value == "add"):
            return None
        receiver = node.func.value
        return rule.ctx.module.code_for_node(receiver), ownership(rule.ctx, receiver)

    answers = [a for a in _run(OWNERSHIP, cst.Call, probe) if a is not None]
    assert answers == [
        ("session", Ownership.INJECTED),
        ("session", Ownership.BORROWED),
        ("db", Ownership.BORROWED),
        ("other", None),
        ("s", Ownership.OWNED),
        ("t", Ownership.OWNED),
        ("t", Ownership.BORROWED),  # a closure: the outer function owns it
        ("self.session", Ownership.BORROWED),
    ]


TRANSACTIONS = """
from sqlalchemy.ext.asyncio import async_sessionmaker
from session_runtime import get_session
factory = async_sessionmaker()

async def f(engine, session):
    async with session.begin():
        mark(1)
    async with factory.begin() as s:
        mark(2)
        async with s.begin_nested():
            mark(3)
    async with engine.begin() as conn:
        mark(4)
    async with get_session() as other:
        mark(5)
    mark(6)
"""


def test_transaction_blocks() -> None:
    def probe(rule: Rule, node: cst.Call) -> object:
        if not (isinstance(node.func, cst.Name) and node.func.value == "mark"):
            return None
        return [key for _, key in enclosing_transactions(rule.ctx)]

    answers = [a for a in _run(TRANSACTIONS, cst.Call, probe) if a is not None]
    assert answers == [["session"], ["s"], ["s", "s"], ["conn"], [], []]


WRITES = """
import sqlalchemy as sa
from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

def f(users, session):
    stmt = update(User).values(x=1)
    session.execute(insert(User).values(x=1))
    session.execute(pg_insert(users).values([]).on_conflict_do_nothing())
    session.execute(sa.delete(User).where(User.id == 1))
    session.execute(users.insert())
    session.execute(text("UPDATE users SET x = 1"))
    session.execute("  -- note\\n DELETE FROM users")
    session.execute(stmt)
    session.execute(select(User))
    session.execute(text("SELECT 1"))
    session.execute(users.select())
    session.execute(query)
"""


def test_write_statements() -> None:
    def probe(rule: Rule, node: cst.Call) -> object:
        if not (isinstance(node.func, cst.Attribute) and node.func.attr.value == "execute"):
            return None
        return is_write_statement(rule.ctx, node.args[0].value)

    answers = [a for a in _run(WRITES, cst.Call, probe) if a is not None]
    assert answers == [True] * 7 + [False] * 4


@pytest.mark.parametrize(
    ("code", "how"),
    [
        ('f"SELECT {x}"', "an f-string"),
        ('"SELECT %s" % x', "`%` formatting"),
        ('"SELECT {}".format(x)', "`.format()`"),
        ('"SELECT " + x', "`+` concatenation"),
        ('"a" f"{x}"', "an f-string"),
        ('f"SELECT 1"', None),
        ('"SELECT " + "1"', None),
        ("x + y", None),
        ('"SELECT 1"', None),
    ],
)
def test_built_strings(code: str, how: str | None) -> None:
    built = built_string(cst.parse_expression(code))
    assert (built.how.value if built else None) == how


@pytest.mark.parametrize(
    ("code", "constant"),
    [
        ("TABLE", True),
        ("User.__tablename__", True),
        ("3", True),
        ("dialect.quote_identifier(name)", True),
        ("name", False),
        ("request.args", False),
    ],
)
def test_constant_like(code: str, constant: bool) -> None:
    assert is_constant_like(cst.parse_expression(code)) is constant


def test_sql_text_helpers() -> None:
    assert sql_head("  /* c */ -- x\n SET x = 1") == "SET x = 1"
    assert is_write_sql("\ninsert into t values (1)")
    assert not is_write_sql("SELECT 1")


def test_name_uses() -> None:
    module = cst.parse_module(
        textwrap.dedent(
            """
            async def f():
                a = make()
                b = make()
                c = make()
                d = make()
                try:
                    yield d
                finally:
                    await d.close()
                async with b:
                    pass
                await a.close()
                register(c)
            """
        )
    )
    function = module.body[0]
    assert isinstance(function, cst.FunctionDef)
    assert name_uses(function, "a") == {NameUse.CLOSE_CALLED}
    assert name_uses(function, "b") == {NameUse.CLOSED}
    assert name_uses(function, "c") == {NameUse.ESCAPES}
    assert name_uses(function, "d") == {NameUse.YIELDED, NameUse.CLOSED}


SPAWNERS = """
import asyncio
import anyio
from fastapi import BackgroundTasks

async def f(tasks: BackgroundTasks, queue, other: Other):
    loop = asyncio.get_running_loop()
    asyncio.create_task(work())
    tasks.add_task(work, 1)
    loop.create_task(work())
    loop.run_in_executor(None, work, 1)
    queue.create_task(work())
    other.add_task(work)
    async with anyio.create_task_group() as tg:
        tg.start_soon(work, 1)
"""


def test_task_spawners() -> None:
    def probe(rule: Rule, node: cst.Call) -> object:
        spawned = spawned_arguments(rule.ctx, node)
        return None if spawned is None else spawned[0]

    answers = [a for a in _run(SPAWNERS, cst.Call, probe) if a is not None]
    assert answers == [
        "asyncio.create_task",
        "BackgroundTasks.add_task",
        "loop.create_task",
        "loop.run_in_executor",
        "start_soon",
    ]
