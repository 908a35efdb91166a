"""Batch service throughput: items/second with no-op handlers, 1, 2 and 4 worker processes.

Starts a throwaway PostgreSQL and a pgbouncer in transaction mode, then for
each worker count creates a batch and runs that many worker processes
(``concurrency`` tasks each) on it at once, started together behind a
barrier. Throughput is measured on the database clock, from the batch's first
claim to its last recorded item, so process start-up is not counted; the
wall time from the start signal to the last worker's exit is shown too.

    python bench/batch_bench.py [--items 1000] [--rounds 5] [--workers 1,2,4]

Everything (servers, workers, the database's share of the CPU) runs on this
machine: on a small one, read the ratios between rows, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import session_runtime
from session_runtime._servers import PgBouncer, PostgresServer
from session_runtime.batch import (
    BatchItem,
    BatchJob,
    create_all,
    create_batch,
    process_batch_with_own_session,
)
from sqlalchemy import func, select

DBNAME = "batch_bench"


async def _noop(payload: Any) -> None:
    return None


async def _worker(url: str, batch_id: str, ready: Path, go: Path, concurrency: int) -> None:
    session_runtime.configure(url, pooler="transaction")
    try:
        # Open the pool's first connection before the start signal.
        async with session_runtime.get_background_session() as s:
            await s.execute(select(1))
        ready.touch()
        while not go.exists():
            await asyncio.sleep(0.005)
        report = await process_batch_with_own_session(
            batch_id,
            _noop,
            concurrency=concurrency,
            poll_interval=timedelta(milliseconds=100),
        )
    finally:
        await session_runtime.dispose()
    print(json.dumps({"succeeded": report.succeeded, "stale": report.stale}))


async def _prepare(server: PostgresServer, url: str) -> None:
    conn = await asyncpg.connect(host=server.host, port=server.port, user=server.user)
    try:
        await conn.execute(f'CREATE DATABASE "{DBNAME}"')
    finally:
        await conn.close()
    engine = session_runtime.make_engine(url, pooler="transaction")
    try:
        await create_all(engine)
    finally:
        await engine.dispose()


async def _new_batch(url: str, items: int) -> uuid.UUID:
    session_runtime.configure(url, pooler="transaction")
    try:
        async with session_runtime.get_session() as s, s.begin():
            return await create_batch(
                s, tenant_id="bench", created_by="bench", items=list(range(items))
            )
    finally:
        await session_runtime.dispose()


async def _db_seconds(url: str, batch_id: uuid.UUID) -> tuple[float, str, int]:
    """(first claim to last result, batch status, items recorded) from the database."""
    session_runtime.configure(url, pooler="transaction")
    try:
        async with session_runtime.get_session() as s:
            first = (
                await s.execute(
                    select(func.min(BatchItem.started_at)).where(BatchItem.batch_id == batch_id)
                )
            ).scalar_one()
            job = (
                await s.execute(
                    select(BatchJob.finished_at, BatchJob.status, BatchJob.completed_items).where(
                        BatchJob.id == batch_id
                    )
                )
            ).one()
        return (job.finished_at - first).total_seconds(), job.status, job.completed_items
    finally:
        await session_runtime.dispose()


def _round(url: str, workers: int, items: int, concurrency: int, tmp: Path) -> tuple[float, float]:
    batch_id = asyncio.run(_new_batch(url, items))
    go = tmp / f"go-{batch_id}"
    readies = [tmp / f"ready-{batch_id}-{n}" for n in range(workers)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                url,
                str(batch_id),
                str(ready),
                str(go),
                str(concurrency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(ready.exists() for ready in readies):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker did not start")
            time.sleep(0.01)
        began = time.monotonic()
        go.touch()
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        wall = time.monotonic() - began
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a worker failed: {[p.returncode for p in procs]}")
    recorded = sum(json.loads(out.strip().splitlines()[-1])["succeeded"] for out in outputs)
    seconds, status, completed = asyncio.run(_db_seconds(url, batch_id))
    if (status, completed, recorded) != ("completed", items, items):
        raise RuntimeError(f"batch ended {status} with {completed}/{items} ({recorded} by workers)")
    return seconds, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker process counts")
    parser.add_argument("--concurrency", type=int, default=5, help="tasks per worker process")
    parser.add_argument("--pool-size", type=int, default=10, help="pgbouncer default_pool_size")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmpdir:
        tmp = Path(tmpdir)
        server = PostgresServer(tmp).start()
        # Connection logging off: pgbouncer also logs to a stderr pipe nobody reads.
        bouncer = PgBouncer(
            server.host,
            server.port,
            user=server.user,
            pool_size=args.pool_size,
            extra={"log_connections": "0", "log_disconnections": "0", "stats_period": "3600"},
        ).start()
        try:
            url = bouncer.url(DBNAME)
            asyncio.run(_prepare(server, url))
            # Rounds interleave every configuration, so a burst of load from
            # elsewhere on the machine hits all of them alike.
            runs: dict[int, list[tuple[float, float]]] = {}
            for _ in range(args.rounds):
                for workers in counts:
                    runs.setdefault(workers, []).append(
                        _round(url, workers, args.items, args.concurrency, tmp)
                    )
        finally:
            bouncer.close()
            server.stop()

    print(
        f"{args.items} no-op items per batch, {args.concurrency} handler tasks per worker "
        f"process, pgbouncer transaction mode (default_pool_size={args.pool_size}); "
        f"median of {args.rounds} interleaved rounds; items/s from first claim to last "
        "result (database clock), wall = start signal to last worker exit"
    )
    print(f"{'workers':>7} | {'items/s':>8} | {'items/s (wall)':>14}")
    print(f"{'-' * 7}-+-{'-' * 8}-+-{'-' * 14}")
    for workers in counts:
        db = statistics.median(r[0] for r in runs[workers])
        wall = statistics.median(r[1] for r in runs[workers])
        print(f"{workers:>7} | {args.items / db:>8.0f} | {args.items / wall:>14.0f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, batch_id, ready, go, concurrency = sys.argv[2:7]
        asyncio.run(_worker(url, batch_id, Path(ready), Path(go), int(concurrency)))
    else:
        main()
