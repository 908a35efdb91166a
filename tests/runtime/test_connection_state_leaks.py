"""SL503's claims about advisory locks and shared migration connections
(session_lint/rules/SL503_session_level_set.py), on the real PostgreSQL and through
pgbouncer in transaction mode:

- ``pg_advisory_lock`` survives ``commit()`` and goes back to the pool with the
  connection: ``pg_locks`` still shows it after the session is closed;
- an unlock on another connection returns false;
- behind a transaction pooler, lock and unlock run on different server connections
  when another client took the first one in between: the unlock returns false;
- ``pg_advisory_xact_lock`` ends with the transaction;
- a ``SET lock_timeout`` run on a connection of the app's pool (what a shared
  Alembic env.py does) is still set on the next checkout.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

KEY = 734_501
LOCKS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key AND granted"
)


async def _held(watcher: AsyncEngine, key: int) -> int:
    async with watcher.connect() as conn:
        return int(await conn.scalar(LOCKS, {"key": key}))


def test_advisory_lock_survives_commit_and_close(postgres_url: str) -> None:
    async def main() -> tuple[int, bool, int, int]:
        engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0)
        other = create_async_engine(postgres_url)
        try:
            async with AsyncSession(engine) as session:
                await session.execute(text("SELECT pg_advisory_lock(:key)"), {"key": KEY})
                await session.commit()
            held_after_close = await _held(other, KEY)  # back in the pool, still locked
            async with other.connect() as conn:
                unlocked_elsewhere = bool(
                    await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": KEY})
                )
            async with AsyncSession(engine) as session:  # the same pooled connection
                await session.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": KEY})
                await session.commit()
            async with AsyncSession(engine) as session:
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": KEY + 1})
                await session.commit()
            return held_after_close, unlocked_elsewhere, await _held(other, KEY), await _held(
                other, KEY + 1
            )
        finally:
            await engine.dispose()
            await other.dispose()

    held_after_close, unlocked_elsewhere, held_at_end, xact_held = asyncio.run(main())
    assert held_after_close == 1, "the lock was released with the session"
    assert unlocked_elsewhere is False, "another connection could unlock it"
    assert held_at_end == 0
    assert xact_held == 0, "pg_advisory_xact_lock outlived its transaction"


def test_lock_and_unlock_reach_different_server_connections_behind_pgbouncer(
    pgbouncer_url: str, postgres_url: str
) -> None:
    """Client A locks through pgbouncer and commits; client B's transaction, still
    open, holds the server connection A used; A's unlock runs on another server
    connection and returns false, and the lock stays."""

    async def main() -> tuple[bool, int]:
        args = {"statement_cache_size": 0}
        client_a = create_async_engine(pgbouncer_url, connect_args=args)
        client_b = create_async_engine(pgbouncer_url, connect_args=args)
        watcher = create_async_engine(postgres_url)
        try:
            async with client_a.connect() as a:
                await a.execute(text("SELECT pg_advisory_lock(:key)"), {"key": KEY + 2})
                await a.commit()  # the server connection goes back to pgbouncer
                async with client_b.connect() as b:
                    # B's transaction takes the server connection A just used
                    # (pgbouncer hands out the most recently used one) and keeps it.
                    await b.execute(text("SELECT 1"))
                    unlocked = bool(
                        await a.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": KEY + 2})
                    )
                    await a.commit()
                    await b.commit()
            still_held = await _held(watcher, KEY + 2)
            # Clean up through a direct connection to the holder: end its backend.
            async with watcher.connect() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND objid = :key"
                    ),
                    {"key": KEY + 2},
                )
            return unlocked, still_held
        finally:
            await client_a.dispose()
            await client_b.dispose()
            await watcher.dispose()

    unlocked, still_held = asyncio.run(main())
    assert unlocked is False, "the unlock reached the server connection holding the lock"
    assert still_held == 1


def test_set_on_a_pooled_connection_outlives_the_migration(postgres_url: str) -> None:
    async def main() -> str:
        engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:  # the app hands this to env.py
                await conn.execute(text("SET lock_timeout = '15s'"))
                await conn.commit()
            async with engine.connect() as conn:  # a later request, same connection
                return str(await conn.scalar(text("SHOW lock_timeout")))
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == "15s"
