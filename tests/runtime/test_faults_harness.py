"""Harness robustness: the plugin's servers survive a temp-root reset and never outlive the run.

Each test runs a child pytest session that uses the plugin's fixtures. While
its test runs, the child sets its basetemp's parent to mode 0700, which is
what any other pytest run does to ``/tmp/pytest-of-<user>``: a server whose
data dir lies below it loses access ("Permission denied"). The child then
checks that its server still works, and ends by failing or by SIGTERM. Afterwards no process it started runs and its dirs are gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from session_runtime.testing import BinaryMissingError, find_binary

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
