"""SL103's claim about an engine created per call and disposed after its block
(session_lint/rules/SL103_engine_per_call.py), on the real PostgreSQL: when the
block raises, ``dispose()`` is skipped and the pool's connection stays open on the
server for as long as anything holds the failure (a logged or retried exception
keeps the frame, and so the engine); disposed in a ``finally``, the connection is
closed before the caller sees the error.

The engines connect to PostgreSQL directly: behind pgbouncer the client connection
is the one left open, and pgbouncer keeps its server connections (with the last
``application_name``) in its own pool whatever the client does, so
``pg_stat_activity`` could not tell the two cases apart.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

OPEN = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")


class Delivery(Exception):
    """The failure of one unit of work (a webhook delivery, say)."""


async def _after_the_block(url: str, name: str) -> None:
    engine = create_async_engine(url, connect_args={"server_settings": {"application_name": name}})
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        raise Delivery("failed")
    await engine.dispose()  # never reached: the block raised


async def _in_finally(url: str, name: str) -> None:
    engine = create_async_engine(url, connect_args={"server_settings": {"application_name": name}})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            raise Delivery("failed")
    finally:
        await engine.dispose()


async def _open_after_failure(work: object, postgres_url: str) -> int:
    name = f"sl103-{uuid.uuid4().hex[:12]}"
    watcher = create_async_engine(postgres_url)
    try:
        with pytest.raises(Delivery) as failure:
            await work(postgres_url, name)  # type: ignore[operator]
        # The caller still holds the failure, as a retry loop or a logger does.
        assert failure.value.__traceback__ is not None
        async with watcher.connect() as conn:
            return int(await conn.scalar(OPEN, {"name": name}))
    finally:
        await watcher.dispose()


def test_dispose_after_the_block_leaves_the_connection_open(postgres_url: str) -> None:
    assert asyncio.run(_open_after_failure(_after_the_block, postgres_url)) == 1


def test_dispose_in_finally_closes_it(postgres_url: str) -> None:
    assert asyncio.run(_open_after_failure(_in_finally, postgres_url)) == 0
