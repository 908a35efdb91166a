"""pytest plugin: a throwaway PostgreSQL and a pgbouncer in transaction mode.

Installed with ``pip install 'session-runtime[testing]'`` and loaded
automatically (``pytest11`` entry point). Fixtures, all session-scoped unless
noted:

``postgres_url``
    ``postgresql+asyncpg://`` URL of a throwaway cluster (pytest-postgresql's
    executor on a free port), database ``session_runtime``.
``session_runtime_postgresql_proc``
    That cluster's ``PostgreSQLExecutor``, like a ``postgresql_proc`` fixture
    yields (``host``, ``port``, ``user``; ``template_dbname`` exists).
``pgbouncer_url``
    The same database through pgbouncer in ``pool_mode=transaction`` with
    ``default_pool_size=3``, so clients share server connections and every
    transaction-pooling hazard is real.
``session_runtime_pgbouncer``
    The :class:`PgBouncer` behind ``pgbouncer_url``: ``.restart()``,
    ``.admin("SHOW SERVERS")``, ``.url(dbname)``.
``make_pgbouncer`` (function scope)
    ``make_pgbouncer(pool_size=2, **settings) -> PgBouncer``: a private
    pgbouncer in front of the same cluster, stopped after the test; for tests
    that restart it or count its server connections.

Already have a ``postgresql_proc``? Put pgbouncer in front of it::

    from session_runtime.testing import pgbouncer_proc
    my_pgbouncer = pgbouncer_proc("postgresql_proc")  # yields a PgBouncer

As root, pass ``executable=session_runtime.testing.pg_ctl_executable()`` to
``postgresql_proc``: PostgreSQL refuses to run as root, and the wrapper runs
it as an unprivileged user.

Why not pytest-postgresql's ``postgresql_proc`` for our own cluster: it
always puts the data dir and log under pytest's basetemp
(``tmp_path_factory.mktemp``), and every pytest run resets
``/tmp/pytest-of-<user>`` to mode 0700; a concurrent run then cuts the
unprivileged server off its own data dir ("Permission denied": the server
dies, and ``pg_ctl stop`` cannot stop it). The plugin drives
pytest-postgresql's ``PostgreSQLExecutor`` itself, with the data dir, log
and socket in a private ``tempfile.mkdtemp`` owned by the server user.

Missing binaries skip the tests with a one-line reason, or fail them when
``SESSION_RUNTIME_REQUIRE_DB=1``. Every process started here is stopped at the
end of the session, on failures, Ctrl-C and SIGTERM too (a SIGTERM becomes a
``KeyboardInterrupt``, so pytest tears down as for Ctrl-C; an interpreter
killed by SIGTERM runs no finalizer and no ``atexit`` handler).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

import pytest

from ._servers import (
    BinaryMissingError,
    PgBouncer,
    PostgresServer,
    ServerStartError,
    accepts_connections,
    find_binary,
    free_port,
    pg_ctl_executable,
    server_user,
)

__all__ = [
    "BinaryMissingError",
    "PgBouncer",
    "PostgresServer",
    "ServerStartError",
    "accepts_connections",
    "find_binary",
    "free_port",
    "pg_ctl_executable",
    "pgbouncer_proc",
]

DBNAME = "session_runtime"
POOL_SIZE = 3


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _tear_down_on_sigterm() -> None:
    """Make SIGTERM tear the session down like Ctrl-C (only if nobody else handles it).

    By default SIGTERM ends the interpreter at once: no fixture teardown, no
    ``atexit``, and the servers outlive the run (pgbouncer runs in a session
    of its own, the postmaster is daemonised by pg_ctl).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


@pytest.fixture(scope="session")
def session_runtime_postgresql_proc() -> Iterator[Any]:
    """A throwaway cluster (pytest-postgresql's ``PostgreSQLExecutor``) in a private temp dir.

    Yields the executor, as ``postgresql_proc`` does, with the template
    database ``session_runtime_tmpl`` pytest-postgresql's client fixtures use.
    """
    _require("pg_ctl", "initdb", "postgres")
    from pytest_postgresql.janitor import DatabaseJanitor

    _tear_down_on_sigterm()
    server = PostgresServer(dbname=DBNAME)
    try:
        executor = server.start().executor
        DatabaseJanitor(
            user=executor.user,
            host=executor.host,
            port=executor.port,
            dbname=executor.template_dbname,
            as_template=True,
        ).init()
        yield executor
    finally:
        server.close()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("SESSION_RUNTIME_REQUIRE_DB") == "1":
        pytest.fail(f"{reason} (SESSION_RUNTIME_REQUIRE_DB=1)", pytrace=False)
    pytest.skip(reason)


def _require(*binaries: str) -> None:
    try:
        for name in binaries:
            find_binary(name)
        server_user()
    except BinaryMissingError as exc:
        _unavailable(str(exc))


async def _create_database(host: str, port: int, user: str, dbname: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(host=host, port=port, user=user, database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """URL (asyncpg) of database ``session_runtime`` on a throwaway PostgreSQL, direct."""
    proc: Any = request.getfixturevalue("session_runtime_postgresql_proc")
    asyncio.run(_create_database(proc.host, proc.port, proc.user, DBNAME))
    return f"postgresql+asyncpg://{proc.user}@{proc.host}:{proc.port}/{DBNAME}"


def _launch(executor: Any, **options: Any) -> PgBouncer:
    bouncer = PgBouncer(executor.host, int(executor.port), user=executor.user, **options)
    try:
        return bouncer.start()
    except BaseException:
        bouncer.close()
        raise


def pgbouncer_proc(
    postgresql_proc_fixture: str = "postgresql_proc",
    *,
    pool_size: int = POOL_SIZE,
    pool_mode: str = "transaction",
    scope: Any = "session",
    **settings: str,
) -> Any:
    """Fixture factory: pgbouncer in front of the named pytest-postgresql process fixture.

    The fixture yields a running :class:`PgBouncer`; ``.url(dbname)`` gives
    an asyncpg URL through it. ``settings`` are extra ``[pgbouncer]`` ini
    settings.
    """

    @pytest.fixture(scope=scope)
    def pgbouncer_fixture(request: pytest.FixtureRequest) -> Iterator[PgBouncer]:
        _require("pgbouncer")
        _tear_down_on_sigterm()
        executor = request.getfixturevalue(postgresql_proc_fixture)
        bouncer = _launch(executor, pool_size=pool_size, pool_mode=pool_mode, extra=settings)
        try:
            yield bouncer
        finally:
            bouncer.close()

    return pgbouncer_fixture


@pytest.fixture(scope="session")
def session_runtime_pgbouncer(
    postgres_url: str, request: pytest.FixtureRequest
) -> Iterator[PgBouncer]:
    """pgbouncer (transaction mode, ``default_pool_size=3``) in front of ``postgres_url``'s cluster."""
    _require("pgbouncer")
    bouncer = _launch(
        request.getfixturevalue("session_runtime_postgresql_proc"), pool_size=POOL_SIZE
    )
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture(scope="session")
def pgbouncer_url(session_runtime_pgbouncer: PgBouncer) -> str:
    """URL (asyncpg) of the ``session_runtime`` database through pgbouncer in transaction mode."""
    return session_runtime_pgbouncer.url(DBNAME)


@pytest.fixture
def make_pgbouncer(
    postgres_url: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., PgBouncer]]:
    """Start private pgbouncers in front of the test cluster; all stopped after the test."""
    _require("pgbouncer")
    executor = request.getfixturevalue("session_runtime_postgresql_proc")
    started: list[PgBouncer] = []

    def make(
        *, pool_size: int = POOL_SIZE, pool_mode: str = "transaction", **settings: str
    ) -> PgBouncer:
        bouncer = _launch(executor, pool_size=pool_size, pool_mode=pool_mode, extra=settings)
        started.append(bouncer)
        return bouncer

    try:
        yield make
    finally:
        for bouncer in started:
            bouncer.close()
