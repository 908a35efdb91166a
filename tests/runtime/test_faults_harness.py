"""Harness robustness: the plugin's servers survive a temp-root reset and never outlive the run,
and ``PostgresServer.start()`` returns only once the server accepts connections.

Each test runs a child pytest session that uses the plugin's fixtures. While
its test runs, the child sets its basetemp's parent to mode 0700, which is
what any other pytest run does to ``/tmp/pytest-of-<user>``: a server whose
data dir lies below it loses access ("Permission denied"). The child then
checks that its server still works, and ends by failing or by SIGTERM. Afterwards no process it started runs and its dirs are gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import pytest
from session_runtime.testing import (
    BinaryMissingError,
    PostgresServer,
    ServerStartError,
    accepts_connections,
    find_binary,
)

CHILD = """
import asyncio, json, os, signal, time
from pathlib import Path

import asyncpg


async def work(url):
    conn = await asyncpg.connect(url.replace("+asyncpg", ""), statement_cache_size=0)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS t (n int)")
        await conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        await conn.execute("CHECKPOINT")
        return await conn.fetchval("SELECT count(*) FROM t")
    finally:
        await conn.close()


def test_child(pgbouncer_url, session_runtime_postgresql_proc, session_runtime_pgbouncer,
               tmp_path_factory):
    proc = session_runtime_postgresql_proc
    basetemp = tmp_path_factory.getbasetemp()
    info = {
        "datadir": proc.datadir,
        "basetemp": str(basetemp),
        "postmaster": int(Path(proc.datadir, "postmaster.pid").read_text().split()[0]),
        "pgbouncer": session_runtime_pgbouncer._proc.pid,
        "pgbouncer_dir": str(session_runtime_pgbouncer.dir),
    }
    os.chmod(basetemp.parent, 0o700)  # what a concurrent pytest run does to its temp root
    assert proc.running()  # pg_ctl status, as the server user
    assert asyncio.run(work(pgbouncer_url)) >= 1000
    Path(os.environ["FAULTS_INFO"]).write_text(json.dumps(info))
    end = os.environ["FAULTS_END"]
    if end == "fail":
        raise AssertionError("failing on purpose")
    os.kill(os.getpid(), signal.SIGTERM if end == "sigterm" else signal.SIGINT)
    time.sleep(10)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


# SIGINT takes the same path as SIGTERM once the plugin has turned SIGTERM
# into KeyboardInterrupt, so it is left out (each child costs an initdb).
@pytest.mark.parametrize(("end", "exit_code"), [("fail", 1), ("sigterm", 2)])
def test_servers_survive_temp_root_reset_and_stop_with_the_run(
    tmp_path: Path, end: str, exit_code: int
) -> None:
    try:
        for name in ("pg_ctl", "initdb", "postgres", "pgbouncer"):
            find_binary(name)
    except BinaryMissingError as missing:
        pytest.skip(str(missing))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "test_child.py").write_text(CHILD)
    (run_dir / "pytest.ini").write_text("[pytest]\n")
    info_path = tmp_path / "info.json"
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "--basetemp",
            str(run_dir / "basetemp"),
            "test_child.py",
        ],
        cwd=run_dir,
        env={**os.environ, "FAULTS_INFO": str(info_path), "FAULTS_END": end},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info_path.exists(), child.stdout[-3000:] + child.stderr[-3000:]
    assert child.returncode == exit_code, child.stdout[-3000:] + child.stderr[-3000:]
    info = json.loads(info_path.read_text())
    # The data dir is outside pytest's temp root, so the reset did not reach it.
    assert not Path(info["datadir"]).is_relative_to(Path(info["basetemp"]).parent)
    # Everything the plugin started is stopped and removed.
    assert not _alive(info["postmaster"]), "the postmaster outlived the run"
    assert not _alive(info["pgbouncer"]), "pgbouncer outlived the run"
    assert _processes_mentioning(info["pgbouncer_dir"]) == []
    assert _processes_mentioning(info["datadir"]) == []
    assert not Path(info["datadir"]).parent.exists()
    assert not Path(info["pgbouncer_dir"]).exists()


def _require_postgres() -> None:
    try:
        for name in ("pg_ctl", "initdb", "postgres"):
            find_binary(name)
    except BinaryMissingError as missing:
        pytest.skip(str(missing))


def _standby(server: PostgresServer) -> None:
    """Turn a stopped cluster into a standby that refuses every connection.

    With ``standby.signal`` and ``hot_standby = off`` the server listens and
    stays in recovery (no primary to follow), answering every connection with
    SQLSTATE 57P03 until it is promoted: the window between "the port is
    open" and "connections are accepted" that a crash recovery opens, held
    open for as long as the test needs.
    """
    datadir = Path(server.executor.datadir)
    owner = datadir.stat()
    signal_file = datadir / "standby.signal"
    signal_file.write_text("")
    os.chown(signal_file, owner.st_uid, owner.st_gid)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write("\nhot_standby = off\n")


def _pg_ctl(server: PostgresServer, *args: str) -> None:
    subprocess.run(
        [server.executor.executable, *args, "-D", server.executor.datadir],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_start_waits_until_connections_are_accepted() -> None:
    """``start()`` returns only once a real connection is accepted, not when the port opens.

    The server is held in recovery (a standby with hot standby off): its port
    is open and ``pg_ctl start -w`` returns, but every connection gets 57P03.
    Another thread promotes it once it has seen that refusal; ``start()``
    cannot return before (no timing involved) and the first statement after
    it succeeds.
    """
    _require_postgres()
    server = PostgresServer()
    try:
        server.start()
        server.stop_server("fast")
        _standby(server)
        refused: list[str] = []

        def promote_once_refusing() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                why = accepts_connections(server.host, server.port, server.user)
                if why is not None and why.startswith("57P03"):
                    refused.append(why)
                    _pg_ctl(server, "promote", "-w")
                    return
                time.sleep(0.02)

        promoter = threading.Thread(target=promote_once_refusing)
        promoter.start()
        try:
            server.start()
        finally:
            promoter.join(60)
        assert refused, "the server never refused a connection: the test proved nothing"

        async def first_statement() -> int:
            conn = await asyncpg.connect(
                host=server.host, port=server.port, user=server.user, database="postgres"
            )
            try:
                return int(await conn.fetchval("SELECT 1"))
            finally:
                await conn.close()

        assert asyncio.run(first_statement()) == 1
    finally:
        server.close()


def test_start_gives_up_at_its_deadline_with_the_server_log() -> None:
    """A server that never accepts connections: ``ServerStartError`` at the deadline, naming
    the refusal and quoting the server log (deterministic: the standby never accepts)."""
    _require_postgres()
    server = PostgresServer()
    try:
        server.start()
        server.stop_server("fast")
        _standby(server)
        began = time.monotonic()
        with pytest.raises(ServerStartError) as raised:
            server.start(timeout=2.0)
        assert time.monotonic() - began >= 2.0
        message = str(raised.value)
        assert "did not accept a connection within 2 s" in message
        assert "57P03" in message
        assert "entering standby mode" in message  # from the server log
    finally:
        server.close()


def test_start_after_a_crash_waits_for_recovery() -> None:
    """``stop_server("immediate")`` then ``start()``: crash recovery ran, and the first
    connection after ``start()`` is accepted (no "not yet accepting connections")."""
    _require_postgres()
    server = PostgresServer()
    try:
        server.start()

        async def write_wal() -> None:
            conn = await asyncpg.connect(
                host=server.host, port=server.port, user=server.user, database="postgres"
            )
            try:
                await conn.execute(
                    "CREATE TABLE wal AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g"
                )
            finally:
                await conn.close()

        asyncio.run(write_wal())
        server.stop_server("immediate")
        server.start()
        assert accepts_connections(server.host, server.port, server.user) is None
        assert "automatic recovery in progress" in server.log_tail(50)

        async def count() -> int:
            conn = await asyncpg.connect(
                host=server.host, port=server.port, user=server.user, database="postgres"
            )
            try:
                return int(await conn.fetchval("SELECT count(*) FROM wal"))
            finally:
                await conn.close()

        assert asyncio.run(count()) == 200000
    finally:
        server.close()
