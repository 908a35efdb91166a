"""SL307's claim (session_lint/rules/SL307_swallowed_session_error.py) through a
real pgbouncer: a handler that rolls back and carries on returns normally to a
caller whose write is not in the database."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine


def test_the_caller_carries_on_and_the_write_is_gone(pgbouncer_url: str) -> None:
    table = f"sl307_{uuid.uuid4().hex[:8]}"

    async def save(session: AsyncSession, name: str) -> None:
        try:
            await session.execute(text(f"INSERT INTO {table} VALUES (:n)"), {"n": name})
            await session.commit()
        except SQLAlchemyError:
            await session.rollback()  # and nothing else: the pattern SL307 reports

    async def main() -> tuple[str, list[str]]:
        engine = create_async_engine(pgbouncer_url, connect_args={"statement_cache_size": 0})
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE TABLE {table} (name text UNIQUE)"))
            async with AsyncSession(engine) as session:
                await save(session, "ada")
                await save(session, "ada")  # violates UNIQUE: swallowed
                outcome = "the caller carried on"
            async with engine.connect() as conn:
                rows = list((await conn.execute(text(f"SELECT name FROM {table}"))).scalars())
                await conn.execute(text(f"DROP TABLE {table}"))
                await conn.commit()
            return outcome, rows
        finally:
            await engine.dispose()

    outcome, rows = asyncio.run(main())
    assert outcome == "the caller carried on"
    assert rows == ["ada"], "the second write was rolled back, and nobody was told"
