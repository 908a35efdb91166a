"""Session poolers only: how many server connections the doctor can hold at once.

A session pooler pins a server connection to each client connection, and
SQLAlchemy's pool keeps its connections open: an engine whose pool is larger
than what the pooler can give queues callers at the pooler until its
``query_wait_timeout`` (pgbouncer: 120 s). Measured, so the printed
configuration can size the pool to fit.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .target import Target

__all__ = ["SQLALCHEMY_DEFAULT_POOL", "session_capacity"]

#: SQLAlchemy's default pool_size + max_overflow: no need to look further.
SQLALCHEMY_DEFAULT_POOL = 15


async def session_capacity(target: Target, wait: float, cap: int = SQLALCHEMY_DEFAULT_POOL) -> int:
    """Client connections that got a server connection at once, up to ``cap``."""
    conns: list[Any] = []
    try:
        while len(conns) < cap:
            conn = await target.connect()
            task = asyncio.ensure_future(conn.fetchval("SELECT 1"))
            done, _ = await asyncio.wait({task}, timeout=wait)
            if not done:
                conn.terminate()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
                break
            conns.append(conn)
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), target.timeout)
    return len(conns)
