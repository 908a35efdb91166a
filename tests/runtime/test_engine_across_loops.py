"""SL408's claim (session_lint/rules/SL408_engine_across_event_loops.py) through a
real pgbouncer in transaction mode: a pooled engine shared by two successive
``asyncio.run(...)`` calls fails on the second, because the pool hands it a
connection opened on the first, closed loop; a ``NullPool`` engine, an engine
created and disposed inside the coroutine, and a shared engine the coroutine
disposes at its end all work on every run."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

# A connection used from the wrong loop leaves asyncpg's cancel coroutine unawaited;
# it is reported when collected, which may be in a later test of this module.
pytestmark = [
    pytest.mark.filterwarnings("ignore:coroutine 'Connection._cancel' was never awaited"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <coroutine object Connection._cancel"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

# What asyncio raises when the second loop awaits a future of the connection's
# protocol, which belongs to the first loop; and what asyncpg says on the third
# run, the connection still marked busy by the second.
DIFFERENT_LOOP = "attached to a different loop"
IN_PROGRESS = "cannot perform operation: another operation is in progress"


def _engine(url: str, **kwargs: object) -> AsyncEngine:
    return create_async_engine(url, connect_args={"statement_cache_size": 0}, **kwargs)


async def _select_one(engine: AsyncEngine) -> int:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session:
        return int((await session.execute(text("SELECT 1"))).scalar_one())


@dataclass(frozen=True)
class Failure:
    type: type[BaseException]
    message: str


def _run(engine: AsyncEngine, times: int = 2) -> list[object]:
    """What a Celery task body or a CLI command does: a new loop on every call."""
    results: list[object] = []
    for _ in range(times):
        try:
            results.append(asyncio.run(_select_one(engine)))
        except Exception as error:  # the failure is the observation
            # Its class and text only: the traceback would keep the dead loop's
            # objects alive past this test.
            results.append(Failure(type(error), str(error)))
    return results


def _dispose(engine: AsyncEngine) -> None:
    """Drop the pool without touching its connections' closed loop; collect what
    the failed runs left (asyncpg's unawaited cancel) while this test's warning
    filter applies."""
    engine.sync_engine.dispose(close=False)
    gc.collect()


def test_a_pooled_engine_fails_on_the_second_loop(pgbouncer_url: str) -> None:
    engine = _engine(pgbouncer_url)  # as at module level: one pool for the process
    try:
        first, second, third = _run(engine, 3)
    finally:
        _dispose(engine)
    assert first == 1
    # ``RuntimeError: Task <Task pending ...> got Future <Future pending
    # cb=[BaseProtocol._on_waiter_completed()]> attached to a different loop``
    assert isinstance(second, Failure) and second.type is RuntimeError, second
    assert "got Future" in second.message and DIFFERENT_LOOP in second.message, second
    # ``sqlalchemy.exc.InterfaceError: (sqlalchemy.dialects.postgresql.asyncpg.
    # InterfaceError) cannot perform operation: another operation is in progress``
    assert isinstance(third, Failure) and issubclass(third.type, InterfaceError), third
    assert IN_PROGRESS in third.message, third


def test_pre_ping_does_not_save_the_second_loop(pgbouncer_url: str) -> None:
    engine = _engine(pgbouncer_url, pool_pre_ping=True)
    try:
        first, second = _run(engine)
    finally:
        _dispose(engine)
    assert first == 1
    assert isinstance(second, Failure) and second.type is RuntimeError, second
    assert DIFFERENT_LOOP in second.message, second


def test_a_null_pool_engine_works_on_every_loop(pgbouncer_url: str) -> None:
    engine = _engine(pgbouncer_url, poolclass=NullPool)
    try:
        assert _run(engine) == [1, 1]
    finally:
        _dispose(engine)


def test_an_engine_made_and_disposed_in_the_coroutine_works(pgbouncer_url: str) -> None:
    async def job() -> int:
        engine = _engine(pgbouncer_url)
        try:
            return await _select_one(engine)
        finally:
            await engine.dispose()

    assert [asyncio.run(job()) for _ in range(2)] == [1, 1]


def test_a_shared_engine_disposed_at_the_end_of_each_run_works(pgbouncer_url: str) -> None:
    engine = _engine(pgbouncer_url)

    async def job() -> int:
        try:
            return await _select_one(engine)
        finally:
            await engine.dispose()

    assert [asyncio.run(job()) for _ in range(2)] == [1, 1]


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("for _ in range(3):\n        asyncio.run(count())", True),
        ("asyncio.run(count())", False),
    ],
)
def test_the_rule_tells_the_two_apart(body: str, found: bool) -> None:
    from session_lint.analyzer import analyze
    from session_lint.project.config import Config
    from session_lint.rules import RULES_BY_CODE

    source = (
        "import asyncio\n"
        "from sqlalchemy import text\n"
        "from sqlalchemy.ext.asyncio import create_async_engine\n"
        'engine = create_async_engine("postgresql+asyncpg://db/app")\n'
        "async def count() -> int:\n"
        "    async with engine.connect() as conn:\n"
        '        return await conn.scalar(text("SELECT 1"))\n'
        "def sync_count() -> None:\n"
        f"    {body}\n"
    )
    findings = analyze(source.encode(), "app/jobs.py", Config(), [RULES_BY_CODE["SL408"]]).findings
    assert [f.code for f in findings] == (["SL408"] if found else [])
