"""SL308's claim (session_lint/rules/SL308_second_connection_in_unit_of_work.py)
through a real pgbouncer in transaction mode: a write through the engine inside a
session's open unit of work is a second transaction, committed even when the
session rolls back."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine


def test_the_engine_write_outlives_the_session_rollback(pgbouncer_url: str) -> None:
    table = f"sl308_{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[list[str], list[str]]:
        engine = create_async_engine(pgbouncer_url, connect_args={"statement_cache_size": 0})
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE TABLE {table} (who text)"))
            async with AsyncSession(engine) as session:
                await session.execute(text(f"INSERT INTO {table} VALUES ('session')"))
                async with engine.begin() as conn:
                    await conn.execute(text(f"INSERT INTO {table} VALUES ('engine')"))
                # The session's transaction does not hold the engine's write: it
                # sees it only because READ COMMITTED reads what others committed.
                seen = sorted((await session.execute(text(f"SELECT who FROM {table}"))).scalars())
                await session.rollback()
            async with engine.connect() as conn:
                left = sorted((await conn.execute(text(f"SELECT who FROM {table}"))).scalars())
                await conn.execute(text(f"DROP TABLE {table}"))
                await conn.commit()
            return seen, left
        finally:
            await engine.dispose()

    seen, left = asyncio.run(main())
    assert seen == ["engine", "session"]
    assert left == ["engine"], "the engine's write stayed after the session rolled back"
