"""The errors SL309 and SL311 quote, raised by the installed SQLAlchemy on a real
connection through pgbouncer in transaction mode."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

PGBOUNCER = {"statement_cache_size": 0}


def test_use_after_commit_inside_begin_raises(pgbouncer_url: str) -> None:
    """SL309: ``commit()`` inside ``async with session.begin():``, then more use."""

    async def main() -> str:
        engine = create_async_engine(pgbouncer_url, connect_args=PGBOUNCER)
        try:
            async with AsyncSession(engine) as session:
                with pytest.raises(InvalidRequestError) as raised:
                    async with session.begin():
                        await session.execute(text("SELECT 1"))
                        await session.commit()
                        await session.execute(text("SELECT 2"))
                return str(raised.value)
        finally:
            await engine.dispose()

    message = asyncio.run(main())
    assert "Can't operate on closed transaction inside context manager." in message
    assert "Please complete the context manager before emitting further commands." in message


def test_commit_as_the_last_use_is_harmless(pgbouncer_url: str) -> None:
    async def main() -> int:
        engine = create_async_engine(pgbouncer_url, connect_args=PGBOUNCER)
        try:
            async with AsyncSession(engine) as session:
                async with session.begin():
                    await session.execute(text("SELECT 1"))
                    await session.commit()
                return int(await session.scalar(text("SELECT 2")))
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 2


def test_isolation_level_after_begin_raises(pgbouncer_url: str) -> None:
    """SL311: inside ``engine.begin()``, and after autobegin on ``engine.connect()``."""

    async def main() -> tuple[str, str, str]:
        engine = create_async_engine(pgbouncer_url, connect_args=PGBOUNCER)
        try:
            with pytest.raises(InvalidRequestError) as in_begin:
                async with engine.begin() as conn:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(InvalidRequestError) as after_statement:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                    await conn.execution_options(isolation_level="SERIALIZABLE")
            async with engine.connect() as conn:  # fresh: allowed
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                level = str(await conn.scalar(text("SHOW transaction_isolation")))
            return str(in_begin.value), str(after_statement.value), level
        finally:
            await engine.dispose()

    in_begin, after_statement, level = asyncio.run(main())
    expected = (
        "This connection has already initialized a SQLAlchemy Transaction() object via "
        "begin() or autobegin; isolation_level may not be altered unless rollback() or "
        "commit() is called first."
    )
    assert expected in in_begin
    assert expected in after_statement
    assert level == "read committed"  # AUTOCOMMIT: no transaction, the default level shown
