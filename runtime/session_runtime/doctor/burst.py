"""A burst of concurrent transactions through a SQLAlchemy ``AsyncEngine``."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .model import Burst
from .statements import Statements
from .target import describe_error

__all__ = ["engine_burst", "smoke"]


async def _transaction(engine: AsyncEngine, sql: Statements, key: int, burst: Burst) -> None:
    async with engine.begin() as conn:
        row = (await conn.execute(text(sql.one_named), {"n": key})).one()
        burst.backends.add(int(row.pid))
        echoed = (
            await conn.execute(text(sql.two_named), {"a": f"k{key}", "b": str(key % 7)})
        ).scalar_one()
        again = (await conn.execute(text(sql.one_named), {"n": key + 1})).one()
    if row.v != 2 * key or echoed != f"k{key}-{key % 7}" or again.v != 2 * (key + 1):
        burst.wrong += 1


async def smoke(engine: AsyncEngine, sql: Statements, timeout: float) -> str | None:
    """One transaction: None if it worked, else the exact error."""
    burst = Burst("smoke", 1, 1)
    try:
        await asyncio.wait_for(_transaction(engine, sql, 1, burst), timeout)
    except Exception as exc:
        return describe_error(exc, timeout)
    return None if not burst.wrong else "wrong result from a single transaction"


async def engine_burst(
    engine: AsyncEngine,
    sql: Statements,
    label: str,
    *,
    tasks: int,
    transactions: int,
    deadline: float,
) -> Burst:
    """``tasks`` concurrent tasks x ``transactions`` transactions; never raises."""
    burst = Burst(label, tasks, transactions)

    async def task(t: int) -> None:
        for i in range(transactions):
            try:
                await _transaction(engine, sql, t * 1000 + i * 10, burst)
                burst.ok += 1
            except Exception as exc:
                burst.errors[describe_error(exc)] += 1

    start = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(task(t) for t in range(tasks))), deadline)
    except asyncio.TimeoutError:
        burst.timed_out = True
    burst.seconds = time.perf_counter() - start
    return burst
