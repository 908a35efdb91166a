"""Fault: a batch worker starts while PostgreSQL is not accepting connections yet.

What a process manager does after a crash: it starts the workers again at
once, while PostgreSQL is still in crash recovery and answers every
connection with SQLSTATE 57P03 ("the database system is not yet accepting
connections"). ``process_batch_with_own_session`` waits for such a server,
with back-off, for up to its ``connect_budget``, instead of dying after its
5 quick attempts (and being restarted in a loop, or given up on, by the
process manager).

The recovery window is made deterministic: the cluster is turned into a
standby with ``hot_standby = off`` and no primary, so it listens and refuses
every connection with 57P03 until the test promotes it. The test promotes
only after the worker has logged that it met the refusal, so nothing here
depends on how long a real crash recovery takes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import session_runtime
from session_runtime.batch import BatchState, create_all, create_batch
from session_runtime.batch import process_batch_with_own_session as process
from session_runtime.batch.worker import server_not_ready
from session_runtime.testing import (
    BinaryMissingError,
    PgBouncer,
    PostgresServer,
    accepts_connections,
    find_binary,
)
from sqlalchemy import exc

DBNAME = "batch_recovery"
ITEMS = 12
CONNECT_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    try:
        for name in ("pg_ctl", "initdb", "postgres", "pgbouncer"):
            find_binary(name)
    except BinaryMissingError as missing:
        pytest.skip(str(missing))
    server = PostgresServer()
    try:
        server.start()

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
        yield server
    finally:
        server.close()


def _pg_ctl(server: PostgresServer, *args: str) -> None:
    subprocess.run(
        [server.executor.executable, *args, "-D", server.executor.datadir],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _new_batch(server: PostgresServer) -> uuid.UUID:
    async def go() -> uuid.UUID:
        session_runtime.configure(server.url(DBNAME))
        try:
            async with session_runtime.get_session() as s, s.begin():
                return await create_batch(
                    s, tenant_id="recovery", created_by="test", items=list(range(ITEMS))
                )
        finally:
            await session_runtime.dispose()

    return asyncio.run(go())


def _hold_in_recovery(server: PostgresServer) -> None:
    """Restart the cluster as a standby that refuses every connection with 57P03 until promoted."""
    server.stop_server("fast")
    datadir = Path(server.executor.datadir)
    owner = datadir.stat()
    signal_file = datadir / "standby.signal"
    signal_file.write_text("")
    os.chown(signal_file, owner.st_uid, owner.st_gid)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write("\nhot_standby = off\n")
    # The executor alone: it returns once the port is open (pg_ctl -w returns
    # for a standby too); server.start() would wait for connections in vain.
    server.executor.start()
    why = accepts_connections(server.host, server.port, server.user)
    assert why is not None and why.startswith("57P03"), why


def _promote(server: PostgresServer) -> None:
    if accepts_connections(server.host, server.port, server.user) is not None:
        _pg_ctl(server, "promote", "-w")


class _Seen(logging.Handler):
    """Notes the worker's "not accepting connections yet" warning."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "not accepting connections yet" in message:
            self.messages.append(message)


@pytest.fixture
def seen() -> Iterator[_Seen]:
    handler = _Seen()
    worker_logger = logging.getLogger("session_runtime.batch")
    worker_logger.addHandler(handler)
    try:
        yield handler
    finally:
        worker_logger.removeHandler(handler)


async def _echo(payload: Any) -> Any:
    return {"n": payload}


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_worker_started_during_recovery_waits_for_the_server(
    server: PostgresServer, seen: _Seen, route: str
) -> None:
    """The worker meets 57P03, keeps retrying (it does not raise), and finishes the batch
    once the server accepts connections.

    Through pgbouncer, a fresh one whose first server login gets the refusal:
    pgbouncer relays PostgreSQL's message to the waiting client (under its
    own SQLSTATE 08P01), and the worker recognises it by that message.
    """
    batch_id = _new_batch(server)
    bouncer: PgBouncer | None = None
    try:
        _hold_in_recovery(server)
        if route == "pgbouncer":
            bouncer = PgBouncer(server.host, server.port, pool_size=2).start()
            url, pooler = bouncer.url(DBNAME), "transaction"
        else:
            url, pooler = server.url(DBNAME), "none"

        async def go() -> Any:
            session_runtime.configure(url, pooler=pooler, connect_args={"timeout": CONNECT_TIMEOUT})
            try:
                worker = asyncio.ensure_future(
                    process(
                        batch_id,
                        _echo,
                        concurrency=4,
                        poll_interval=timedelta(milliseconds=200),
                        connect_budget=timedelta(seconds=60),
                    )
                )
                deadline = time.monotonic() + 30
                while not seen.messages:
                    assert not worker.done(), worker.result()
                    assert time.monotonic() < deadline, "the worker never met the refusal"
                    await asyncio.sleep(0.01)
                # The worker is waiting, not dead; now recovery ends.
                assert not worker.done()
                await asyncio.to_thread(_promote, server)
                return await asyncio.wait_for(worker, 60)
            finally:
                await session_runtime.dispose()

        report = asyncio.run(go())
        assert report.not_ready_retries >= 1
        assert (report.succeeded, report.failed, report.stale) == (ITEMS, 0, 0)
        assert report.state is BatchState.COMPLETED
    finally:
        if bouncer is not None:
            bouncer.close()
        _promote(server)


def test_worker_gives_up_after_its_connect_budget(server: PostgresServer, seen: _Seen) -> None:
    """A server that stays in recovery: the worker raises the refusal, not before its budget.

    Lower bound: the budget (nothing returns earlier). Upper bound, what the
    worker promises: the budget, then 5 attempts each bounded by the connect
    timeout (refusals come at once), with at most 0.1 + 0.2 + 0.2 + 0.2 s of
    back-off (poll_interval 200 ms), plus 5 s of slack for a loaded machine.
    """
    budget = 1.5
    batch_id = _new_batch(server)
    try:
        _hold_in_recovery(server)

        async def go() -> tuple[BaseException | None, float]:
            session_runtime.configure(
                server.url(DBNAME), pooler="none", connect_args={"timeout": CONNECT_TIMEOUT}
            )
            began = time.monotonic()
            try:
                await process(
                    batch_id,
                    _echo,
                    poll_interval=timedelta(milliseconds=200),
                    connect_budget=timedelta(seconds=budget),
                )
            except (exc.DBAPIError, OSError) as error:
                return error, time.monotonic() - began
            finally:
                await session_runtime.dispose()
            return None, time.monotonic() - began

        error, took = asyncio.run(go())
        assert error is not None, "the worker processed a batch on a server in recovery?"
        assert server_not_ready(error), repr(error)
        assert seen.messages
        assert took >= budget
        assert took < budget + 5 * CONNECT_TIMEOUT + 0.7 + 5.0, took
    finally:
        _promote(server)


def test_what_counts_as_not_ready() -> None:
    """57P03 except "shutting down", and PostgreSQL's "not yet" messages relayed by pgbouncer."""
    assert server_not_ready(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert server_not_ready(
        asyncpg.CannotConnectNowError("the database system is not yet accepting connections")
    )
    assert not server_not_ready(
        asyncpg.CannotConnectNowError("the database system is shutting down")
    )
    # pgbouncer: the server's message, under pgbouncer's own SQLSTATE.
    relayed = asyncpg.ProtocolViolationError("the database system is not accepting connections")
    assert server_not_ready(relayed)
    wrapped = exc.DBAPIError("SELECT 1", None, Exception("adapted"))
    wrapped.__cause__ = relayed
    assert server_not_ready(wrapped)
    assert not server_not_ready(ConnectionRefusedError(111, "Connect call failed"))
    assert not server_not_ready(
        asyncpg.ProtocolViolationError(
            "server login has been failing, try again later (server_login_retry)"
        )
    )
