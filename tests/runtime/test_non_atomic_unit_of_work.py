"""SL306's claim (session_lint/rules/SL306_non_atomic_unit_of_work.py) through a
real pgbouncer in transaction mode: two helpers that each open a session and
commit are two transactions, so when the second fails the first write stays; the
same writes through one session roll back together."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def _run(pgbouncer_url: str, one_session: bool) -> list[str]:
    table = f"sl306_{uuid.uuid4().hex[:8]}"

    async def main() -> list[str]:
        engine = create_async_engine(pgbouncer_url, connect_args={"statement_cache_size": 0})
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE TABLE {table} (who text PRIMARY KEY)"))
                await conn.execute(text(f"INSERT INTO {table} VALUES ('taken')"))
            try:
                await _delete_then_insert(engine, table, one_session)
            except IntegrityError:
                pass
            else:
                pytest.fail("the second write did not fail")
            async with engine.begin() as conn:
                left = sorted((await conn.execute(text(f"SELECT who FROM {table}"))).scalars())
                await conn.execute(text(f"DROP TABLE {table}"))
            return left
        finally:
            await engine.dispose()

    return asyncio.run(main())


async def _delete_then_insert(engine: AsyncEngine, table: str, one_session: bool) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    delete = text(f"DELETE FROM {table} WHERE who = 'taken'")
    # The second write breaks the primary key: 'x' twice.
    insert = text(f"INSERT INTO {table} VALUES ('x'), ('x')")
    if one_session:
        async with factory.begin() as session:
            await session.execute(delete)
            await session.execute(insert)
        return

    async def delete_rows() -> None:  # a helper that opens its own session and commits
        async with factory() as session:
            await session.execute(delete)
            await session.commit()

    async def insert_rows() -> None:
        async with factory() as session:
            await session.execute(insert)
            await session.commit()

    await delete_rows()
    await insert_rows()


def test_the_first_helper_write_stays_committed_when_the_second_fails(
    pgbouncer_url: str,
) -> None:
    assert _run(pgbouncer_url, one_session=False) == [], "the delete was committed alone"


def test_one_session_rolls_both_writes_back(pgbouncer_url: str) -> None:
    assert _run(pgbouncer_url, one_session=True) == ["taken"]
