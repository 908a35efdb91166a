"""The claims of SL305, SL306 and SL404 as widened by the effect summaries
(docs/project-index.md, "Effect summaries"), proved on the real PostgreSQL behind
pgbouncer in transaction mode:

- SL305: a slow call after an autobegun statement holds the connection *idle in
  transaction* (PostgreSQL's own ``pg_stat_activity`` says so); with a pool of N,
  N such calls at once make the next request wait out ``pool_timeout`` with
  ``QueuePool limit of size N overflow 0 reached``; and PostgreSQL's
  ``idle_in_transaction_session_timeout`` ends the backend mid-request, so the
  request's next statement fails (asyncpg: "the underlying connection is closed").
- SL306: repository methods that each commit the session they were given are
  separate transactions: when the second fails, the first stays committed.
- SL404: a session that ran a statement and is never committed, rolled back or
  closed keeps its connection checked out: with a pool of 1, the next caller
  times out.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

PGBOUNCER = {"statement_cache_size": 0}


def test_slow_call_after_a_read_is_idle_in_transaction(postgres_url: str) -> None:
    """pg_stat_activity of the session's backend during the 'slow call'."""

    async def main() -> str:
        engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0)
        watcher = create_async_engine(postgres_url)
        try:
            factory = async_sessionmaker(engine, expire_on_commit=False)
            async with factory() as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))  # autobegin
                # The "HTTP call": the session waits without a statement.
                async with watcher.connect() as conn:
                    state = await conn.scalar(
                        text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                    )
                await session.commit()
            return str(state)
        finally:
            await engine.dispose()
            await watcher.dispose()

    assert asyncio.run(main()) == "idle in transaction"


def test_slow_calls_in_transactions_exhaust_the_pool(pgbouncer_url: str) -> None:
    """Two requests read, then wait 1.5 s on a 'slow call' with the transaction
    open; a third request, with pool_size=2 and pool_timeout=0.5, cannot get a
    connection. The message is SQLAlchemy's, quoted in SL305's docs."""

    async def main() -> str:
        engine = create_async_engine(
            pgbouncer_url,
            connect_args=PGBOUNCER,
            pool_size=2,
            max_overflow=0,
            pool_timeout=0.5,
        )
        factory = async_sessionmaker(engine, expire_on_commit=False)
        started = asyncio.Event()
        holding = 0

        async def slow_request() -> None:
            nonlocal holding
            async with factory() as session:
                await session.execute(text("SELECT 1"))
                holding += 1
                if holding == 2:
                    started.set()
                await asyncio.sleep(1.5)  # the slow call, transaction open
                await session.commit()

        async def third_request() -> str:
            await started.wait()
            try:
                async with factory() as session:
                    await session.execute(text("SELECT 1"))
            except PoolTimeout as exc:
                return str(exc)
            return "served"

        try:
            results = await asyncio.gather(slow_request(), slow_request(), third_request())
        finally:
            await engine.dispose()
        return str(results[2])

    message = asyncio.run(main())
    assert "QueuePool limit of size 2 overflow 0 reached, connection timed out" in message


def test_idle_in_transaction_timeout_kills_the_connection(postgres_url: str) -> None:
    """With idle_in_transaction_session_timeout set, a transaction left open during
    a slow call is terminated by the server (its backend is gone from
    pg_stat_activity), and the request's next statement fails: asyncpg reports
    the connection closed under it."""

    async def main() -> tuple[int, str]:
        engine = create_async_engine(
            postgres_url,
            connect_args={"server_settings": {"idle_in_transaction_session_timeout": "300"}},
        )
        watcher = create_async_engine(postgres_url)
        try:
            async with AsyncSession(engine) as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                await asyncio.sleep(1.0)  # the slow call
                async with watcher.connect() as conn:
                    alive = await conn.scalar(
                        text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                        {"pid": pid},
                    )
                try:
                    await session.execute(text("SELECT 1"))
                except DBAPIError as exc:
                    return int(alive), str(exc.orig)
                return int(alive), "still alive"
        finally:
            await engine.dispose()
            await watcher.dispose()

    alive, message = asyncio.run(main())
    assert alive == 0, "the server did not end the idle transaction's backend"
    assert "connection is closed" in message, message


def test_repository_methods_that_each_commit_are_separate_transactions(
    pgbouncer_url: str,
) -> None:
    table = f"sl306m_{uuid.uuid4().hex[:8]}"

    class UserRepository:
        def __init__(self, session: AsyncSession) -> None:
            self.session = session

        async def remove_placeholder(self) -> None:
            await self.session.execute(text(f"DELETE FROM {table} WHERE who = 'taken'"))
            await self.session.commit()

        async def add_twice(self) -> None:
            await self.session.execute(text(f"INSERT INTO {table} VALUES ('x'), ('x')"))
            await self.session.commit()

    async def main() -> list[str]:
        engine = create_async_engine(pgbouncer_url, connect_args=PGBOUNCER)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE TABLE {table} (who text PRIMARY KEY)"))
                await conn.execute(text(f"INSERT INTO {table} VALUES ('taken')"))
            async with AsyncSession(engine) as session:
                repo = UserRepository(session)
                await repo.remove_placeholder()
                with pytest.raises(IntegrityError):
                    await repo.add_twice()
            async with engine.begin() as conn:
                left = sorted((await conn.execute(text(f"SELECT who FROM {table}"))).scalars())
                await conn.execute(text(f"DROP TABLE {table}"))
            return left
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == [], "the first method's delete stayed committed"


def test_a_session_never_ended_keeps_its_connection(pgbouncer_url: str) -> None:
    """SL404's default form: ``session = factory(); return await session.get(...)``
    with a pool of 1: the second call cannot check a connection out."""

    async def main() -> tuple[int, str]:
        engine = create_async_engine(
            pgbouncer_url, connect_args=PGBOUNCER, pool_size=1, max_overflow=0, pool_timeout=0.5
        )
        factory = async_sessionmaker(engine, expire_on_commit=False)
        kept: list[AsyncSession] = []

        async def order_total() -> int:
            session = factory()
            kept.append(session)  # what the caller's frame would hold on to
            return int(await session.scalar(text("SELECT 42")))

        try:
            first = await order_total()
            try:
                await order_total()
            except PoolTimeout as exc:
                second = str(exc)
            else:
                second = "served"
            for session in kept:
                await session.close()
        finally:
            await engine.dispose()
        return first, second

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = asyncio.run(main())
        gc.collect()
    assert first == 42
    assert "QueuePool limit of size 1 overflow 0 reached" in second
