"""SL310's claims (session_lint/rules/SL310_failed_statement_swallowed.py) through a
real pgbouncer in transaction mode: a statement that fails inside a transaction,
its error swallowed, makes the next statement fail with PostgreSQL's "current
transaction is aborted"; after a failed flush SQLAlchemy raises
PendingRollbackError; a savepoint keeps the transaction usable."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import Column, Integer, MetaData, Table, text
from sqlalchemy.exc import DBAPIError, PendingRollbackError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import registry

PGBOUNCER = {"statement_cache_size": 0}


def _after_a_failed_statement(pgbouncer_url: str, savepoint: bool) -> str:
    async def main() -> str:
        engine = create_async_engine(pgbouncer_url, connect_args=PGBOUNCER)
        try:
            async with AsyncSession(engine) as session:
                await session.execute(text("SELECT 1"))
                try:
                    if savepoint:
                        async with session.begin_nested():
                            await session.execute(text("SELECT 1/0"))
                    else:
                        await session.execute(text("SELECT 1/0"))
                except SQLAlchemyError:
                    pass  # "carry on without it"
                try:
                    return str(await session.scalar(text("SELECT 'still usable'")))
                except DBAPIError as exc:
                    return str(exc.orig)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_the_next_statement_fails_in_the_aborted_transaction(pgbouncer_url: str) -> None:
    message = _after_a_failed_statement(pgbouncer_url, savepoint=False)
    assert "current transaction is aborted, commands ignored until end of transaction block" in (
        message
    )


def test_a_savepoint_keeps_the_transaction_usable(pgbouncer_url: str) -> None:
    assert _after_a_failed_statement(pgbouncer_url, savepoint=True) == "still usable"


def test_after_a_failed_flush_sqlalchemy_refuses(pgbouncer_url: str) -> None:
    table = f"sl310_{uuid.uuid4().hex[:8]}"
    metadata = MetaData()
    rows = Table(table, metadata, Column("id", Integer, primary_key=True))

    class Row:
        def __init__(self, id: int) -> None:
            self.id = id

    registry(metadata=metadata).map_imperatively(Row, rows)

    async def main() -> str:
        engine = create_async_engine(pgbouncer_url, connect_args=PGBOUNCER)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            async with AsyncSession(engine) as session:
                session.add_all([Row(1)])
                await session.flush()
                try:
                    session.add(Row(1))  # the same primary key
                    await session.flush()
                except SQLAlchemyError:
                    pass
                try:
                    await session.execute(text("SELECT 1"))
                except PendingRollbackError as exc:
                    return str(exc)
                return "no error"
        finally:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all)
            await engine.dispose()

    message = asyncio.run(main())
    assert (
        "This Session's transaction has been rolled back due to a previous exception during flush"
        in message
    )
