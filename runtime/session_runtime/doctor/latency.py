"""Probe 5: round-trip time of a connect and of a trivial transaction."""

from __future__ import annotations

import time

from .model import Timing
from .target import Target

__all__ = ["probe_latency"]


async def probe_latency(
    target: Target, *, connects: int = 5, transactions: int = 20
) -> tuple[Timing, Timing]:
    connect_ms: list[float] = []
    for _ in range(connects):
        start = time.perf_counter()
        conn = await target.connect()
        connect_ms.append((time.perf_counter() - start) * 1000)
        await conn.close()
    conn = await target.connect()
    transaction_ms: list[float] = []
    try:
        for _ in range(transactions):
            start = time.perf_counter()
            # BEGIN, SELECT 1, COMMIT: what the smallest unit of work costs.
            async with conn.transaction():
                await conn.fetchval("SELECT 1")
            transaction_ms.append((time.perf_counter() - start) * 1000)
    finally:
        await conn.close()
    return Timing(connect_ms), Timing(transaction_ms)
