"""SL409's claims (session_lint/rules/SL409_session_on_shared_object.py) through a
real pgbouncer in transaction mode: two concurrent "requests" that share one
session kept at module level fail on a fresh session with "concurrent operations
are not permitted", and share one transaction, so one request's rollback
discards the other's write without an error; with a session per request, both
succeed and the write is kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker


async def _with_engine(
    pgbouncer_url: str, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[object]]
) -> object:
    engine = create_async_engine(pgbouncer_url, connect_args={"statement_cache_size": 0})
    try:
        return await work(async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()


async def _two_reads(
    factory: async_sessionmaker[AsyncSession], shared: bool
) -> tuple[list[object], list[object]]:
    """Two concurrent requests, twice: on a fresh session, then on one that holds
    its connection. Each returns its transaction's id."""
    module_level = factory()  # what ``session = factory()`` at module level holds
    statement = text("SELECT pg_sleep(0.1), txid_current()")

    async def request() -> object:
        if shared:
            return (await module_level.execute(statement)).one()[1]
        async with factory() as own:
            return (await own.execute(statement)).one()[1]

    async def two() -> list[object]:
        return list(await asyncio.gather(request(), request(), return_exceptions=True))

    try:
        return await two(), await two()
    finally:
        await module_level.close()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-request"])
def test_concurrent_requests_on_one_session_fail_then_share_a_transaction(
    pgbouncer_url: str, shared: bool
) -> None:
    outcome = asyncio.run(_with_engine(pgbouncer_url, lambda f: _two_reads(f, shared)))
    assert isinstance(outcome, tuple)
    fresh, connected = outcome
    if not shared:
        assert all(isinstance(r, int) for r in (*fresh, *connected))
        assert len({*fresh, *connected}) == 4, "each request has a transaction of its own"
        return
    errors = [r for r in fresh if isinstance(r, BaseException)]
    assert len(errors) == 1, fresh
    assert isinstance(errors[0], InvalidRequestError)
    assert str(errors[0]).startswith(
        "This session is provisioning a new connection; concurrent operations are not permitted"
    )
    # Once the session holds a connection, the second request's statement waits
    # for the first and runs in the same transaction.
    assert all(isinstance(r, int) for r in connected), connected
    assert connected[0] == connected[1]


@pytest.fixture
def notes(postgres_url: str) -> Iterator[str]:
    """A table of its own, created directly on PostgreSQL and dropped afterwards."""
    table = f"sl409_notes_{uuid.uuid4().hex[:8]}"

    async def ddl(statement: str) -> None:
        engine = create_async_engine(postgres_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(ddl(f"CREATE TABLE {table} (id serial PRIMARY KEY, body text NOT NULL)"))
    yield table
    asyncio.run(ddl(f"DROP TABLE {table}"))


async def _rollback_race(
    factory: async_sessionmaker[AsyncSession], table: str, shared: bool
) -> tuple[list[object], list[object]]:
    """Request A inserts a row, waits on something slow, then commits; meanwhile
    request B's statement fails and B rolls back, as any error handler does."""
    module_level = factory()
    opened: list[AsyncSession] = []

    def session() -> AsyncSession:
        if shared:
            return module_level
        own = factory()  # closed after both requests: two connections at most
        opened.append(own)
        return own

    async def request_a() -> str:
        mine = session()
        await mine.execute(text(f"INSERT INTO {table} (body) VALUES ('from A')"))
        await asyncio.sleep(0.3)  # an HTTP call, a slow computation
        await mine.commit()
        return "A committed"

    async def request_b() -> str:
        await asyncio.sleep(0.1)
        mine = session()
        try:
            await mine.execute(text("SELECT 1 / 0"))
        except DBAPIError as exc:
            await mine.rollback()
            return f"B rolled back after {type(exc.orig).__name__}"
        return "B succeeded"

    try:
        results: list[object] = list(
            await asyncio.gather(request_a(), request_b(), return_exceptions=True)
        )
    finally:
        for each in (module_level, *opened):
            await each.close()
    async with factory() as check:
        rows = list((await check.scalars(text(f"SELECT body FROM {table}"))).all())
    return results, rows


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-request"])
def test_one_requests_rollback_discards_the_others_write(
    pgbouncer_url: str, notes: str, shared: bool
) -> None:
    outcome = asyncio.run(_with_engine(pgbouncer_url, lambda f: _rollback_race(f, notes, shared)))
    assert isinstance(outcome, tuple)
    results, rows = outcome
    # Neither request sees an error: B handled its own, and A's commit succeeds.
    assert results[0] == "A committed"
    assert isinstance(results[1], str) and results[1].startswith("B rolled back after ")
    assert rows == ([] if shared else ["from A"])


def test_a_shared_sync_session_loses_writes_the_same_way(pgbouncer_url: str, notes: str) -> None:
    """A synchronous ``Session`` used by async handlers: its calls do not yield, but
    the handlers interleave at their awaits and share its transaction."""
    from sqlalchemy import create_engine

    engine = create_engine(pgbouncer_url.replace("+asyncpg", "+psycopg"))
    shared = sessionmaker(engine)()

    async def request_a() -> None:
        shared.execute(text(f"INSERT INTO {notes} (body) VALUES ('from A')"))
        await asyncio.sleep(0.2)
        shared.commit()

    async def request_b() -> None:
        await asyncio.sleep(0.1)
        try:
            shared.execute(text("SELECT 1 / 0"))
        except DBAPIError:
            shared.rollback()

    async def both() -> None:
        await asyncio.gather(request_a(), request_b())

    try:
        asyncio.run(both())
        with Session(engine) as check:
            rows = list(check.scalars(text(f"SELECT body FROM {notes}")).all())
    finally:
        shared.close()
        engine.dispose()
    assert rows == []


@pytest.mark.parametrize(
    ("form", "path"),
    [
        ("session", "app/db.py"),
        ("factory", "app/db.py"),
        # A script's module-level session serves its one run (role ``script``).
        ("session", "scripts/backfill.py"),
        ("main-block", "app/backfill.py"),
    ],
)
def test_the_rule_tells_them_apart(form: str, path: str) -> None:
    from session_lint.analyzer import analyze
    from session_lint.project.config import Config
    from session_lint.rules import RULES_BY_CODE

    if form == "factory":
        held, body = (
            "factory",
            "    async with shared() as session:\n        await session.execute(text('SELECT 1'))\n",
        )
    else:
        held, body = "factory()", "    await shared.execute(text('SELECT 1'))\n"
    source = (
        "import asyncio\n"
        "from sqlalchemy import text\n"
        "from sqlalchemy.ext.asyncio import async_sessionmaker\n"
        "factory = async_sessionmaker()\n"
        f"shared = {held}\n"
        "async def handler():\n"
        f"{body}"
    )
    if form == "main-block":
        source += 'if __name__ == "__main__":\n    asyncio.run(asyncio.sleep(0))\n'
    found = analyze(source.encode(), path, Config(), [RULES_BY_CODE["SL409"]]).findings
    reported = form == "session" and path.startswith("app/")
    assert [f.code for f in found] == (["SL409"] if reported else [])
