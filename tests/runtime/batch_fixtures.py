"""Fixtures and helpers for the batch service tests: a database of their own behind pgbouncer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import pytest
import session_runtime
from session_runtime.batch import BatchItem, BatchJob, create_all
from session_runtime.testing import PgBouncer, pgbouncer_proc
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

DBNAME = "batch_service"


async def _create_database(postgres_url: str) -> None:
    url = make_url(postgres_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database="postgres"
    )
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DBNAME):
            await conn.execute(f'CREATE DATABASE "{DBNAME}"')
    finally:
        await conn.close()


# The batch tests get a pgbouncer of their own (transaction mode, pool of 3,
# like the plugin's). Connection logging is off: pgbouncer in the foreground
# also logs to stderr, which the launcher pipes and does not drain, and the
# hundreds of connects these tests make would fill the pipe and stall pgbouncer.
batch_pgbouncer = pgbouncer_proc(
    "session_runtime_postgresql_proc",
    pool_size=3,
    log_connections="0",
    log_disconnections="0",
    stats_period="3600",
)


@pytest.fixture(scope="session")
def batch_url(postgres_url: str, request: pytest.FixtureRequest) -> str:
    """URL of database ``batch_service`` (batch tables created) through pgbouncer, transaction mode."""
    # postgres_url first: it starts the cluster the pgbouncer fixture fronts.
    bouncer: PgBouncer = request.getfixturevalue("batch_pgbouncer")
    url = bouncer.url(DBNAME)

    async def setup() -> None:
        await _create_database(postgres_url)
        engine = session_runtime.make_engine(url, pooler="transaction")
        try:
            await create_all(engine)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    return url


def run(url: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` in a fresh event loop with session_runtime configured on ``url``."""

    async def main() -> T:
        session_runtime.configure(url, pooler="transaction")
        try:
            return await work()
        finally:
            await session_runtime.dispose()

    return asyncio.run(main())


def tenant() -> str:
    """A tenant id no other test uses."""
    return f"tenant-{uuid.uuid4().hex[:12]}"


async def table_counts(session: AsyncSession) -> tuple[int, int]:
    """(batch rows, item rows) in the whole database."""
    jobs = (await session.execute(select(func.count()).select_from(BatchJob))).scalar_one()
    items = (await session.execute(select(func.count()).select_from(BatchItem))).scalar_one()
    return jobs, items


async def item_rows(batch_id: uuid.UUID) -> list[Any]:
    """Every item of a batch, as rows, by position."""
    async with session_runtime.get_session() as s:
        result = await s.execute(
            select(BatchItem.__table__)
            .where(BatchItem.batch_id == batch_id)
            .order_by(BatchItem.position)
        )
        return list(result.all())
