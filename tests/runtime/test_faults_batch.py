"""Fault: PostgreSQL stops while ``process_batch_with_own_session`` works through a batch.

A cluster of its own (the shared one other tests use is never stopped),
behind a pgbouncer of its own in transaction mode. The batch service's
design (runtime/README.md, "Failure handling"): a worker retries each
database step with back-off up to 5 times in a row, then raises. So a
server that stays down makes the worker fail with the database error; the
items it held go back to the pool when their lease runs out, and running a
worker again once the server is back finishes the batch.

pgbouncer's ``query_wait_timeout`` is 1 s here (default 120 s): with
PostgreSQL down, a transaction that pgbouncer accepted waits in its queue
that long before it fails, and the worker waits with it (and carries on if
the server returns meanwhile). 1 s keeps the outage, and the test, short.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import session_runtime
from session_runtime.batch import BatchItem, BatchJob, create_all, create_batch
from session_runtime.batch import process_batch_with_own_session as process
from session_runtime.testing import BinaryMissingError, PgBouncer, PostgresServer, find_binary
from sqlalchemy import exc, select
from sqlalchemy.ext.asyncio import create_async_engine

DBNAME = "batch_faults"
ITEMS = 80
CONCURRENCY = 4
LEASE = 1.5
CONNECT_TIMEOUT = 2.0
# What the worker promises here: it gives up after 5 failed attempts per
# step, with back-off sleeps of 0.1 + 0.2 + 0.2 + 0.2 s (poll_interval caps
# them), each attempt failing at once (login refused while pgbouncer's server
# logins fail) or after query_wait_timeout (1 s), then the shutdown's own
# hand-back, bounded at 5 s: 0.7 + 5 x 1 + 5 = 10.7 s. None of it is CPU
# work, so a slower machine does not move it (measured 2.7 s).
RAISES_WITHIN = 12.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[PostgresServer, PgBouncer]]:
    try:
        for name in ("pg_ctl", "initdb", "postgres", "pgbouncer"):
            find_binary(name)
    except BinaryMissingError as missing:
        pytest.skip(str(missing))
    server = PostgresServer()
    bouncer: PgBouncer | None = None
    try:
        server.start()
        bouncer = PgBouncer(
            server.host,
            server.port,
            pool_size=3,
            extra={"query_wait_timeout": "1", "log_connections": "0"},
        ).start()

        async def setup() -> None:
            conn = await asyncpg.connect(
                host=server.host, port=server.port, user=server.user, database="postgres"
            )
            try:
                await conn.execute(f'CREATE DATABASE "{DBNAME}"')
            finally:
                await conn.close()
            engine = session_runtime.make_engine(server.url(DBNAME))
            try:
                await create_all(engine)
            finally:
                await engine.dispose()

        asyncio.run(setup())
        yield server, bouncer
    finally:
        if bouncer is not None:
            bouncer.close()
        server.close()


@dataclass
class CallLog:
    """Every handler call: ``calls[id] = [n, state]``, state running/returned/cancelled."""

    calls: list[list[Any]] = field(default_factory=list)

    async def handler(self, payload: Any) -> Any:
        call = len(self.calls)
        self.calls.append([payload["n"], "running"])
        try:
            await asyncio.sleep(0.03)
        except asyncio.CancelledError:
            self.calls[call][1] = "cancelled"
            raise
        self.calls[call][1] = "returned"
        return {"n": payload["n"], "call": call}

    def returned(self) -> int:
        return sum(1 for _, state in self.calls if state == "returned")

    def per_item(self, since: int = 0) -> collections.Counter[int]:
        return collections.Counter(n for n, _ in self.calls[since:])


async def _snapshot(url: str, batch_id: uuid.UUID) -> tuple[Any, list[Any]]:
    """The batch row and its items, read directly (not through pgbouncer)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            job = (
                await conn.execute(select(BatchJob.__table__).where(BatchJob.id == batch_id))
            ).one()
            items = (
                await conn.execute(
                    select(BatchItem.__table__)
                    .where(BatchItem.batch_id == batch_id)
                    .order_by(BatchItem.position)
                )
            ).all()
        return job, list(items)
    finally:
        await engine.dispose()


async def _wait_for_pooler(url: str) -> float:
    """Seconds until pgbouncer serves again after the server came back.

    After failed server logins pgbouncer refuses new clients ("server login
    has been failing, try again later (server_login_retry)") until its next
    login attempt succeeds: up to ``server_login_retry`` (1 s here, 15 s by
    default) after the server is back.
    """
    began = time.monotonic()
    engine = session_runtime.make_engine(url, pooler="transaction")
    try:
        while True:
            try:
                async with engine.connect() as conn:
                    await conn.execute(select(1))
                return time.monotonic() - began
            except (exc.DBAPIError, OSError):
                assert time.monotonic() - began < 10, "pgbouncer did not recover"
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


def _check_recorded(job: Any, items: list[Any], log: CallLog) -> None:
    """Nothing is marked done that a handler did not return, and the counts match the items."""
    by_status = collections.Counter(item.status for item in items)
    assert job.completed_items == by_status["succeeded"]
    assert job.failed_items == by_status["failed"] == 0
    for item in items:
        if item.status == "succeeded":
            n, state = log.calls[item.result["call"]]
            assert (n, state) == (item.position, "returned"), item
            assert item.result["n"] == item.position


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_stops_mid_batch(cluster: tuple[PostgresServer, PgBouncer], mode: str) -> None:
    """``pg_ctl stop -m <mode>`` at ~30 %, back after the worker gave up; a new worker finishes.

    * the worker raises a database error (``DBAPIError``/``OSError``) within
      a bounded time, it does not hang;
    * every item marked succeeded holds the result of a handler call that
      returned, and the batch's counts equal the item table, before and
      after the outage (``immediate``: after crash recovery);
    * once the server is back, a second worker finishes the batch: every
      item succeeded, items recorded before the outage are not run again,
      the rest are recorded exactly once, counts consistent.
    """
    server, bouncer = cluster
    url = bouncer.url(DBNAME)
    log = CallLog()

    async def first_worker() -> tuple[uuid.UUID, BaseException | None, float]:
        session_runtime.configure(
            url, pooler="transaction", connect_args={"timeout": CONNECT_TIMEOUT}
        )
        try:
            async with session_runtime.get_session() as s, s.begin():
                batch_id = await create_batch(
                    s,
                    tenant_id="faults",
                    created_by="test",
                    items=[{"n": n} for n in range(ITEMS)],
                )
            worker = asyncio.ensure_future(
                process(
                    batch_id,
                    log.handler,
                    concurrency=CONCURRENCY,
                    lease=timedelta(seconds=LEASE),
                    retry_delay=timedelta(0),
                    poll_interval=timedelta(milliseconds=200),
                )
            )
            deadline = time.monotonic() + 20
            while log.returned() < ITEMS * 0.3:
                assert not worker.done(), worker.result()
                assert time.monotonic() < deadline, "no progress"
                await asyncio.sleep(0.005)
            stopped = time.monotonic()
            await asyncio.to_thread(server.stop_server, mode)
            error: BaseException | None = None
            try:
                await asyncio.wait_for(worker, RAISES_WITHIN + 5)
            except (exc.DBAPIError, OSError) as raised:
                error = raised
            return batch_id, error, time.monotonic() - stopped
        finally:
            await session_runtime.dispose()

    batch_id, error, raised_after = asyncio.run(first_worker())
    assert error is not None, "the worker finished a batch while its database was down?"
    assert raised_after < RAISES_WITHIN, raised_after
    calls_before = len(log.calls)
    assert all(state != "running" for _, state in log.calls), "a handler outlived its worker"

    restart = time.monotonic()
    server.start()
    restarted_in = time.monotonic() - restart
    job, items = asyncio.run(_snapshot(server.url(DBNAME), batch_id))
    _check_recorded(job, items, log)
    done_before = {item.position for item in items if item.status == "succeeded"}
    assert ITEMS * 0.2 <= len(done_before) < ITEMS
    assert job.status == "running"

    async def second_worker() -> Any:
        session_runtime.configure(
            url, pooler="transaction", connect_args={"timeout": CONNECT_TIMEOUT}
        )
        try:
            return await process(
                batch_id,
                log.handler,
                concurrency=CONCURRENCY,
                lease=timedelta(seconds=LEASE),
                retry_delay=timedelta(0),
                poll_interval=timedelta(milliseconds=200),
            )
        finally:
            await session_runtime.dispose()

    serving_in = asyncio.run(_wait_for_pooler(url)) + restarted_in
    began = time.monotonic()
    report = asyncio.run(second_worker())
    finished_in = time.monotonic() - began

    job, items = asyncio.run(_snapshot(server.url(DBNAME), batch_id))
    _check_recorded(job, items, log)
    assert [item.status for item in items] == ["succeeded"] * ITEMS
    assert (job.status, job.completed_items, job.failed_items, job.progress) == (
        "completed",
        ITEMS,
        0,
        1.0,
    )
    rerun = log.per_item(since=calls_before)
    # Recorded before the outage: never run again. The rest: recorded once,
    # by the second worker, and run at least once (a handler may have
    # returned before the outage without its result being committed).
    assert not done_before & set(rerun), sorted(done_before & set(rerun))
    assert set(rerun) == set(range(ITEMS)) - done_before
    assert (report.succeeded, report.failed, report.stale) == (ITEMS - len(done_before), 0, 0)
    assert report.state is not None and report.state.value == "completed"
    ran_twice = sum(1 for n, count in log.per_item().items() if count > 1)
    print(
        f"-m {mode}: worker raised {type(error).__name__} {raised_after:.2f}s after the stop; "
        f"{len(done_before)}/{ITEMS} committed before; server back in {restarted_in:.2f}s, "
        f"pgbouncer serving again {serving_in:.2f}s after the restart began; "
        f"second worker finished the other {report.succeeded} in {finished_in:.2f}s "
        f"({ran_twice} items ran twice)"
    )
