"""Transactions/second through pgbouncer (transaction mode) for engine configurations.

Starts its own throwaway PostgreSQL and pgbouncer (session_runtime's test
launcher), then runs interleaved rounds of the same workload for:

* ``make_engine``                 session_runtime's engine (statement_cache_size=0,
                                  checkout liveness check, no ping)
* ``make_engine + pre_ping``      the same with ``pool_pre_ping=True``
* ``docs recipe``                 SQLAlchemy docs: uuid prepared_statement_name_func
                                  + statement_cache_size=0 + prepared_statement_cache_size=0
* ``defaults, direct``            ``create_async_engine(url)`` straight to PostgreSQL

Workload: ``--tasks`` asyncio tasks share one engine (pool_size = tasks), each
transaction reads and updates one random row. Rounds are interleaved so
machine noise hits every configuration alike; the table shows the median.
Then a liveness run: pgbouncer restarted under load, for ``make_engine`` with
and without ``pool_pre_ping``.

Run: ``python bench/runtime_bench.py [--transactions N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from session_runtime import make_engine
from session_runtime._servers import PgBouncer, PostgresServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROWS = 1000


async def setup_schema(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS bench_accounts"))
        await conn.execute(
            text("CREATE TABLE bench_accounts (id int PRIMARY KEY, balance int NOT NULL)")
        )
        await conn.execute(
            text("INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(1, :n) g"),
            {"n": ROWS},
        )
    await engine.dispose()


async def one_transaction(engine: AsyncEngine, rng: random.Random) -> None:
    row = rng.randint(1, ROWS)
    async with engine.begin() as conn:
        await conn.execute(text("SELECT balance FROM bench_accounts WHERE id = :id"), {"id": row})
        await conn.execute(
            text("UPDATE bench_accounts SET balance = balance + 1 WHERE id = :id"), {"id": row}
        )


async def measure(factory: Callable[[], AsyncEngine], transactions: int, tasks: int) -> float:
    engine = factory()
    try:
        # Warm the pool so connects are not timed.
        await asyncio.gather(*(one_transaction(engine, random.Random(t)) for t in range(tasks)))
        per_task = transactions // tasks

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(per_task):
                await one_transaction(engine, rng)

        start = time.perf_counter()
        await asyncio.gather(*(worker(t) for t in range(tasks)))
        return per_task * tasks / (time.perf_counter() - start)
    finally:
        await engine.dispose()


async def restart_under_load(bouncer: PgBouncer, url: str, pre_ping: bool) -> tuple[int, float]:
    """Restart pgbouncer under 10 busy tasks: (failed transactions, seconds from restart to last failure)."""
    engine = make_engine(url, pooler="transaction", pool_pre_ping=pre_ping)
    failures: list[float] = []
    stop = False

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop:
            try:
                await one_transaction(engine, rng)
            except Exception:
                failures.append(time.monotonic())
            await asyncio.sleep(0)

    workers = [asyncio.create_task(worker(s)) for s in range(10)]
    await asyncio.sleep(0.5)
    began = time.monotonic()
    await asyncio.to_thread(bouncer.restart)
    await asyncio.sleep(1.0)
    stop = True
    await asyncio.gather(*workers)
    await engine.dispose()
    return len(failures), (max(failures) - began) if failures else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transactions", type=int, default=2000, help="per configuration per round"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--pgbouncer-pool-size", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="runtime-bench-"))
    server = PostgresServer(workdir).start()
    bouncer = PgBouncer(
        server.host,
        server.port,
        pool_size=args.pgbouncer_pool_size,
        extra={"log_connections": "0", "log_disconnections": "0"},
    ).start()
    try:
        direct, pooled = server.url(), bouncer.url()
        await setup_schema(direct)
        pool = {"pool_size": args.tasks, "max_overflow": 0}
        configs: dict[str, Callable[[], AsyncEngine]] = {
            "make_engine": lambda: make_engine(pooled, pooler="transaction", **pool),
            "make_engine + pre_ping": lambda: make_engine(
                pooled, pooler="transaction", pool_pre_ping=True, **pool
            ),
            "docs recipe": lambda: create_async_engine(
                pooled,
                connect_args={
                    "statement_cache_size": 0,
                    "prepared_statement_cache_size": 0,
                    "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
                },
                **pool,
            ),
            "defaults, direct": lambda: create_async_engine(direct, **pool),
        }
        results: dict[str, list[float]] = {name: [] for name in configs}
        for round_no in range(args.rounds):
            order = list(configs)
            random.Random(round_no).shuffle(order)
            for name in order:
                results[name].append(await measure(configs[name], args.transactions, args.tasks))
            print(f"round {round_no + 1}/{args.rounds} done", flush=True)

        median = {name: statistics.median(values) for name, values in results.items()}
        recipe, baseline = median["docs recipe"], median["defaults, direct"]
        print()
        print(
            f"{args.tasks} tasks, {args.transactions} transactions x {args.rounds} interleaved rounds, "
            f"pgbouncer default_pool_size={args.pgbouncer_pool_size}"
        )
        print(
            f"{'configuration':<26}{'median tps':>12}{'min':>9}{'max':>9}{'/ recipe':>10}{'/ direct':>10}"
        )
        for name, values in results.items():
            print(
                f"{name:<26}{median[name]:>12.0f}{min(values):>9.0f}{max(values):>9.0f}"
                f"{median[name] / recipe:>10.2f}{median[name] / baseline:>10.2f}"
            )

        print("\npgbouncer restarted under 10 busy tasks (same engine throughout):")
        for pre_ping in (False, True):
            failed, last = await restart_under_load(bouncer, pooled, pre_ping)
            label = "make_engine + pre_ping" if pre_ping else "make_engine"
            print(
                f"{label:<26} failed transactions {failed:>3}, last failure {last * 1000:.0f} ms after restart began"
            )
    finally:
        bouncer.close()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
