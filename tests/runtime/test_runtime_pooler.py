"""make_engine through a real pgbouncer in transaction mode (default_pool_size=3)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable

from runtime_workload import run_workload, server_prepared_statements
from session_runtime import make_engine
from session_runtime.testing import PgBouncer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def test_defaults_fail_through_pgbouncer(schema: str, pgbouncer_url: str) -> None:
    """The harness reproduces the real problem: stock asyncpg settings break on a transaction pooler."""

    async def go() -> None:
        engine = create_async_engine(pgbouncer_url)
        try:
            outcome = await run_workload(engine, tasks=20, transactions=5)
        finally:
            await engine.dispose()
        assert outcome.failed > 0, "defaults unexpectedly worked through pgbouncer"
        assert any("prepared statement" in message for message in outcome.errors), outcome.errors

    asyncio.run(go())


def test_make_engine_through_pgbouncer(schema: str, pgbouncer_url: str) -> None:
    """50 tasks x 20 transactions (JSONB/ENUM/UUID, repeated parameterised statements, a server-side stream): 0 errors."""

    async def go() -> None:
        engine = make_engine(pgbouncer_url, pooler="transaction")
        try:
            outcome = await run_workload(engine, tasks=50, transactions=20)
        finally:
            await engine.dispose()
        assert outcome.errors == {}
        assert outcome.wrong == 0
        assert outcome.ok == 50 * 20

    asyncio.run(go())


def test_pooler_auto_detected_from_pgbouncer_flag(schema: str, pgbouncer_url: str) -> None:
    """``?pgbouncer=true`` turns transaction mode on and never reaches asyncpg."""

    async def go() -> None:
        engine = make_engine(pgbouncer_url + "?pgbouncer=true")
        try:
            outcome = await run_workload(engine, tasks=10, transactions=5)
        finally:
            await engine.dispose()
        assert outcome.errors == {} and outcome.wrong == 0

    asyncio.run(go())


_TAGGED_CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from sqlalchemy import text
    from session_runtime import make_engine

    url, tag = sys.argv[1], sys.argv[2]

    async def main():
        engine = make_engine(url, pooler="transaction")
        wrong = errors = 0
        async def worker(t):
            nonlocal wrong, errors
            for i in range(25):
                try:
                    async with engine.begin() as conn:
                        got = (await conn.execute(
                            text("SELECT CAST(:tag AS text) || ':' || CAST(:t AS text) || ':' || CAST(:i AS text)"),
                            {"tag": tag, "t": str(t), "i": str(i)},
                        )).scalar_one()
                        pid = (await conn.execute(text("SELECT CAST(:tag AS text)"), {"tag": tag})).scalar_one()
                    wrong += (got != f"{tag}:{t}:{i}") + (pid != tag)
                except Exception:
                    errors += 1
        await asyncio.gather(*(worker(t) for t in range(20)))
        await engine.dispose()
        print(json.dumps({"wrong": wrong, "errors": errors}))

    asyncio.run(main())
    """
)


def test_two_processes_share_pgbouncer(pgbouncer_url: str) -> None:
    """Two OS processes through one pgbouncer, each tagging its queries: no error, no foreign result."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TAGGED_CLIENT, pgbouncer_url, tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("alpha", "beta")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"wrong": 0, "errors": 0}


def _leaks(make_pgbouncer: Callable[..., PgBouncer], **connect_args: object) -> dict[int, int]:
    """Run a workload through a fresh pgbouncer, then count statements left on its server connections."""
    bouncer = make_pgbouncer(pool_size=3)
    url = bouncer.url("session_runtime")

    async def go() -> dict[int, int]:
        engine = make_engine(url, pooler="transaction") if not connect_args else None
        if engine is None:
            engine = create_async_engine(url, connect_args=connect_args)
        try:
            outcome = await run_workload(engine, tasks=20, transactions=10)
            assert outcome.errors == {} and outcome.wrong == 0
        finally:
            await engine.dispose()
        return await server_prepared_statements(url, bouncer.pool_size)

    counts = asyncio.run(go())
    servers = {row["remote_pid"] for row in bouncer.admin("SHOW SERVERS")}
    assert servers and servers <= set(counts), (servers, counts)
    return counts


def test_no_prepared_statements_left_on_server_connections(
    schema: str, make_pgbouncer: Callable[..., PgBouncer]
) -> None:
    """make_engine leaves 0 prepared statements on pgbouncer's server connections.

    Control: the SQLAlchemy docs' recipe (uuid names) leaves many, so the probe does see leaks.
    """
    assert set(_leaks(make_pgbouncer).values()) == {0}
    leaked = _leaks(
        make_pgbouncer,
        statement_cache_size=0,
        prepared_statement_cache_size=0,
        prepared_statement_name_func=lambda: f"__asyncpg_{uuid.uuid4()}__",
    )
    assert sum(leaked.values()) > 0, leaked


def test_autocommit_through_pgbouncer(pgbouncer_url: str) -> None:
    """make_engine allows AUTOCOMMIT in transaction mode because it works: 0 errors, 0 wrong results.

    Three statement shapes with different parameter counts and types run
    concurrently outside any transaction, so if pgbouncer moved one
    statement's Parse and Bind to different server connections, it would
    show as an error or a wrong result.
    """

    async def go() -> None:
        engine = make_engine(pgbouncer_url, pooler="transaction", isolation_level="AUTOCOMMIT")
        errors: list[str] = []
        wrong = 0

        async def worker(t: int) -> None:
            nonlocal wrong
            for i in range(30):
                try:
                    async with engine.connect() as conn:
                        shape = (t + i) % 3
                        if shape == 0:
                            ok = (
                                await conn.execute(
                                    text("SELECT CAST(:a AS int) + CAST(:b AS int)"),
                                    {"a": t, "b": i},
                                )
                            ).scalar_one() == t + i
                        elif shape == 1:
                            ok = (
                                await conn.execute(
                                    text("SELECT :s || 'x' || :n || :z"),
                                    {"s": f"q{t}", "n": str(i), "z": "z"},
                                )
                            ).scalar_one() == f"q{t}x{i}z"
                        else:
                            ok = (
                                await conn.execute(
                                    text("SELECT CAST(:a AS bigint) * 2, CAST(:b AS text)"),
                                    {"a": t, "b": str(i)},
                                )
                            ).all() == [(2 * t, str(i))]
                        wrong += not ok
                except Exception as exc:
                    errors.append(repr(exc))

        try:
            await asyncio.gather(*(worker(t) for t in range(60)))
        finally:
            await engine.dispose()
        assert errors == [] and wrong == 0

    asyncio.run(go())


def test_psycopg_through_pgbouncer(pgbouncer_url: str) -> None:
    """postgresql+psycopg URLs get prepare_threshold=None and work through the pooler."""

    async def go() -> None:
        url = pgbouncer_url.replace("+asyncpg", "+psycopg")
        engine = make_engine(url, pooler="transaction")
        wrong = 0

        async def worker(t: int) -> None:
            nonlocal wrong
            for i in range(10):
                async with engine.begin() as conn:
                    got = (
                        await conn.execute(text("SELECT CAST(:a AS int) * 2"), {"a": t * 100 + i})
                    ).scalar_one()
                    wrong += got != (t * 100 + i) * 2

        try:
            await asyncio.gather(*(worker(t) for t in range(10)))
        finally:
            await engine.dispose()
        assert wrong == 0

    asyncio.run(go())
