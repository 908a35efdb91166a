"""Probe 2: prepared statements with asyncpg's defaults and with ``statement_cache_size=0``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

from .backends import Holders
from .model import Burst, EndpointKind, PreparedStatements
from .statements import Statements
from .target import DoctorError, Target, describe_error

__all__ = ["probe_prepared", "raw_burst"]

#: asyncpg's own default for ``statement_cache_size``.
ASYNCPG_DEFAULT_CACHE = 100


async def _transaction(conn: Any, sql: Statements, key: int, burst: Burst) -> None:
    async with conn.transaction():
        row = await conn.fetchrow(sql.one, key)
        burst.backends.add(int(row["pid"]))
        echoed = await conn.fetchval(sql.two, f"k{key}", str(key % 7))
        again = await conn.fetchrow(sql.one, key + 1)
    if row["v"] != 2 * key or echoed != f"k{key}-{key % 7}" or again["v"] != 2 * (key + 1):
        burst.wrong += 1


async def raw_burst(
    target: Target,
    sql: Statements,
    label: str,
    *,
    cache_size: int,
    clients: int = 10,
    transactions: int = 10,
    deallocate_own: bool = False,
) -> Burst:
    """``clients`` asyncpg connections x ``transactions`` transactions; never raises.

    ``deallocate_own``: each client drops its named statements before it
    disconnects. Only where a client owns its backend (direct, session
    pooler), so a pooler without a reset query keeps nothing of ours.
    """
    burst = Burst(label, clients, transactions)

    async def client(c: int) -> None:
        try:
            conn = await target.connect(statement_cache_size=cache_size)
        except DoctorError as exc:
            burst.errors[describe_error(exc.__cause__ or exc, target.timeout)] += transactions
            return
        try:
            for i in range(transactions):
                try:
                    await _transaction(conn, sql, c * 1000 + i * 10, burst)
                    burst.ok += 1
                except Exception as exc:
                    burst.errors[describe_error(exc)] += 1
            if deallocate_own:
                await conn.execute("DEALLOCATE ALL")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), target.timeout)

    start = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(client(c) for c in range(clients))), target.timeout * 3
        )
    except asyncio.TimeoutError:
        burst.timed_out = True
    burst.seconds = time.perf_counter() - start
    return burst


async def _defaults_move(
    target: Target, sql: Statements, wait: float
) -> tuple[bool | None, str, set[int]]:
    """Behind a transaction pooler: prepare on one backend, execute on another.

    Deterministic where a burst is a matter of luck, and it leaves exactly one
    named statement behind (on the first backend), which the cleanup removes.
    """
    conn = await target.connect(statement_cache_size=ASYNCPG_DEFAULT_CACHE)
    holders = Holders(target, wait)
    try:
        async with conn.transaction():
            first = int((await conn.fetchrow(sql.one, 21))["pid"])
        for _ in range(2):
            if await holders.add() is None:
                break

        async def second() -> int:
            async with conn.transaction():
                return int((await conn.fetchrow(sql.one, 22))["pid"])

        try:
            other, _ = await holders.run_while_held(second())
        except DoctorError:
            raise
        except Exception as exc:
            return (
                False,
                f"{describe_error(exc)} (the statement was prepared on backend {first}; "
                "the next transaction ran on another)",
                {first},
            )
        if other == first:
            return (
                None,
                f"the next transaction ran on the same backend {first} (no other server "
                "connection was free), so a move was not observed",
                {first},
            )
        return (
            True,
            f"a statement prepared on backend {first} also ran on backend {other}: "
            "the pooler re-prepares named statements (pgbouncer max_prepared_statements)",
            {first},
        )
    finally:
        await holders.release()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), target.timeout)


async def probe_prepared(
    target: Target, kind: EndpointKind, sql: Statements, wait: float
) -> tuple[PreparedStatements, set[int]]:
    """Both configurations; returns the result and backends that may hold a doctor statement."""
    result = PreparedStatements(asyncpg.__version__, None, "")
    dirty: set[int] = set()
    if kind == "transaction_pooler":
        result.defaults_ok, result.defaults_evidence, dirty = await _defaults_move(
            target, sql, wait
        )
    else:
        burst = await raw_burst(
            target, sql, "asyncpg defaults", cache_size=ASYNCPG_DEFAULT_CACHE, deallocate_own=True
        )
        result.defaults_burst = burst
        result.defaults_ok = burst.passed
        result.defaults_evidence = burst.summary()
        if burst.top_error():
            result.defaults_evidence += f"; {burst.top_error()}"
    result.cache_off = await raw_burst(target, sql, "statement_cache_size=0", cache_size=0)
    return result, dirty
