"""Workloads and probes shared by the runtime tests (real servers, no mocks)."""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import Column, Integer, MetaData, Table, select, text, update
from sqlalchemy.dialects.postgresql import ENUM, JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine


class Mood(enum.Enum):
    sad = "sad"
    ok = "ok"
    happy = "happy"


metadata = MetaData()
items = Table(
    "sr_items",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("task", Integer, nullable=False, index=True),
    Column("n", Integer, nullable=False),
    Column("mood", ENUM(Mood, name="sr_mood"), nullable=False),
    Column("doc", JSONB, nullable=False),
)


_runs = itertools.count()


@dataclass
class Outcome:
    """What a workload saw: errors by message, and results that were wrong."""

    ok: int = 0
    wrong: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def record_error(self, exc: BaseException) -> None:
        first_line = (str(exc).splitlines() or [""])[0]
        self.errors[f"{type(exc).__name__}: {first_line[:160]}"] += 1


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)


async def _one_transaction(engine: AsyncEngine, task: int, i: int, outcome: Outcome) -> None:
    """Insert, read back by parameter, update, and every 5th time stream this task's rows."""
    item_id = uuid.uuid4()
    mood = list(Mood)[(task + i) % 3]
    async with engine.begin() as conn:
        await conn.execute(
            items.insert(),
            {"id": item_id, "task": task, "n": i, "mood": mood, "doc": {"task": task, "i": i}},
        )
        row = (
            await conn.execute(
                select(items.c.n, items.c.mood, items.c.doc).where(items.c.id == item_id)
            )
        ).one()
        if (row.n, row.mood, row.doc) != (i, mood, {"task": task, "i": i}):
            outcome.wrong += 1
        await conn.execute(update(items).where(items.c.id == item_id).values(n=items.c.n + 1000))
        echoed = (
            await conn.execute(
                text("SELECT CAST(:t AS int) * 100 + CAST(:i AS int)"), {"t": task, "i": i}
            )
        ).scalar_one()
        if echoed != task * 100 + i:
            outcome.wrong += 1
        if i % 5 == 4:
            # Server-side cursor: needs the transaction's server connection
            # for the whole stream.
            result = await conn.stream(
                select(items.c.n, items.c.mood).where(items.c.task == task).order_by(items.c.n),
                execution_options={"yield_per": 2},
            )
            rows = [r async for r in result]
            if len(rows) != i + 1 or any(r.n < 1000 for r in rows):
                outcome.wrong += 1


async def run_workload(engine: AsyncEngine, *, tasks: int = 50, transactions: int = 20) -> Outcome:
    """``tasks`` concurrent tasks x ``transactions`` transactions each; never raises."""
    outcome = Outcome()
    # Task keys unique per run, so streams only see this run's rows.
    base = next(_runs) * 1000

    async def worker(task: int) -> None:
        for i in range(transactions):
            try:
                await _one_transaction(engine, base + task, i, outcome)
                outcome.ok += 1
            except Exception as exc:
                outcome.record_error(exc)

    await asyncio.gather(*(worker(t) for t in range(tasks)))
    return outcome


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def server_prepared_statements(pgbouncer_url: str, pool_size: int) -> dict[int, int]:
    """Prepared statements on each of pgbouncer's server connections: ``{backend pid: count}``.

    ``pg_prepared_statements`` only shows the current session's statements,
    so this visits every server connection: it opens ``pool_size`` clients
    through pgbouncer and has each hold a transaction open at the same time.
    pgbouncer cannot give two open transactions the same server connection
    and never opens more than ``default_pool_size`` of them, so together the
    transactions sit on every server connection; each reads
    ``pg_backend_pid()`` and ``count(*) FROM pg_prepared_statements``. The
    probe itself uses unnamed statements (``statement_cache_size=0``), so it
    adds none. Callers cross-check the pids against ``SHOW SERVERS``.
    """
    dsn = asyncpg_dsn(pgbouncer_url)
    conns = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(pool_size)]
    try:
        transactions = [c.transaction() for c in conns]
        for tr in transactions:
            await tr.start()
        rows: list[Any] = [
            await c.fetchrow(
                "SELECT pg_backend_pid() AS pid, count(*) AS n FROM pg_prepared_statements"
            )
            for c in conns
        ]
        for tr in transactions:
            await tr.rollback()
    finally:
        for c in conns:
            await c.close()
    return {int(r["pid"]): int(r["n"]) for r in rows}
