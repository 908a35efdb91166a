"""session-runtime doctor when it cannot do its job: one clear line, exit 2, within the timeout, no password.

The elapsed-time bounds are the doctor's promise ("cannot connect: one
line, within the timeout"): ``--timeout`` plus at most 1 s for the event
loop, the dialect and the report (measured ~0.02 s idle), or the timeout
itself where the endpoint answers at once (refused, wrong password, not
PostgreSQL: milliseconds). The console-script test also pays for an
interpreter start and imports (~0.5 s idle), hence 10 s there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from session_runtime.doctor.cli import main
from session_runtime.testing import PgBouncer, free_port
from sqlalchemy.engine import make_url

PASSWORD = "s3cret-Pa55word"
SCRIPT = Path(sys.executable).with_name("session-runtime")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    start = time.monotonic()
    code = main(["doctor", *args])
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    return code, captured.out, captured.err, elapsed


def assert_one_clean_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("session-runtime doctor: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert PASSWORD not in err


@contextlib.contextmanager
def fake_server(reply: bytes | None) -> Iterator[int]:
    """A TCP server that answers every connection with ``reply`` (None: never answers)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    # accept() in a thread is not interrupted by close(): poll a stop flag.
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if reply is not None:
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                    conn.sendall(reply)
                    conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        for conn in held:
            conn.close()


def test_refused_port_via_console_script() -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{free_port()}/db"
    start = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPT), "doctor", url, "--timeout", "2"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert_one_clean_line(proc.stderr, "cannot connect to", "connection refused", "app:***@")
    assert proc.stdout == ""
    assert time.monotonic() - start < 10  # interpreter start included


def test_silent_server_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_server(None) as port:
        url = f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/db"
        code, out, err, elapsed = run_cli(capsys, url, "--timeout", "1")
    assert code == 2 and out == ""
    assert_one_clean_line(err, "no answer within 1 s")
    assert elapsed < 2.0


def test_unknown_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err, elapsed = run_cli(
        capsys, f"postgresql://app:{PASSWORD}@no-such-host.invalid/db", "--timeout", "2"
    )
    assert code == 2
    assert_one_clean_line(err, "cannot connect to")
    assert elapsed < 3.0


def test_not_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err, _ = run_cli(capsys, f"mysql://root:{PASSWORD}@localhost/db")
    assert code == 2 and out == ""
    assert_one_clean_line(err, "not a PostgreSQL URL: 'mysql'")
    # A string that does not even parse is never echoed (its password could not be masked).
    code, _, err, _ = run_cli(capsys, f"{PASSWORD} is not a url")
    assert code == 2
    assert_one_clean_line(err, "not a database URL")


def test_endpoint_that_is_not_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as port:
        url = f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/db"
        code, _, err, elapsed = run_cli(capsys, url, "--timeout", "2")
    assert code == 2
    assert_one_clean_line(err, "does not answer like PostgreSQL")
    assert elapsed < 2.0


def test_json_error_and_python_dash_m() -> None:
    url = f"postgres://app:{PASSWORD}@127.0.0.1:{free_port()}/db"
    proc = subprocess.run(
        [sys.executable, "-m", "session_runtime", "doctor", url, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert PASSWORD not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit_code"] == 2 and "connection refused" in report["error"]


def test_no_url(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, _, err, _ = run_cli(capsys)
    assert code == 2
    assert_one_clean_line(err, "no database URL")


def test_port_that_is_not_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err, _ = run_cli(capsys, f"postgresql://u:{PASSWORD}@h:notaport/db")
    assert code == 2
    assert_one_clean_line(err, "the port in the database URL is not a number")
    assert "int()" not in err


def test_bad_timeout_shows_the_doctors_usage() -> None:
    proc = subprocess.run(
        [str(SCRIPT), "doctor", "--timeout", "-1"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: session-runtime doctor "), proc.stderr
    assert "session-runtime doctor: error: argument --timeout: must be positive" in proc.stderr


@pytest.fixture
def password_bouncer(postgres_url: str) -> Iterator[PgBouncer]:
    """pgbouncer that checks a SCRAM password itself (the test cluster trusts everyone)."""
    server = make_url(postgres_url)
    assert server.host and server.port
    bouncer = PgBouncer(server.host, server.port, extra={"auth_type": "scram-sha-256"})
    # Same file pgbouncer was configured with (and owns); only the password changes.
    (bouncer.dir / "userlist.txt").write_text(f'"postgres" "{PASSWORD}"\n')
    try:
        yield bouncer.start()
    finally:
        bouncer.close()


def test_wrong_password_and_right_password(
    password_bouncer: PgBouncer, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = (
        f"postgresql://postgres:not-{PASSWORD}@127.0.0.1:{password_bouncer.port}/session_runtime"
    )
    code, out, err, elapsed = run_cli(capsys, wrong, "--timeout", "2")
    assert code == 2 and out == ""
    assert_one_clean_line(err, "authentication failed", "postgres:***@")
    assert f"not-{PASSWORD}" not in err
    assert elapsed < 2.0

    right = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{password_bouncer.port}/session_runtime"
    for fmt in ("text", "json"):
        code, out, err, _ = run_cli(capsys, right, "--format", fmt)
        assert code == 0, out + err
        assert PASSWORD not in out + err
        assert "postgres:***@" in out
    assert os.environ.get("DATABASE_URL") != right
