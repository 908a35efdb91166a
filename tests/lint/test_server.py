"""The resident analysis server behind the flake8 plugin: same answers as the
in-process analysis, never a stale one, and flake8 never worse off without it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.editors import client, wire
from session_lint.project.config import find_config_file, load_config
from tests.lint.conftest import ROOT, server_pid
from tests.lint.test_flake8 import flake8_config

SOURCE = b"""from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as session:
        await session.commit()
"""

PROBE = """
import sys
from flake8.main.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print("libcst imported:", "libcst" in sys.modules, file=sys.stderr)
raise SystemExit(code)
"""


@pytest.fixture(autouse=True)
def _fresh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test decides for itself whether a server can be reached.
    monkeypatch.setattr(client, "_given_up", False)
    monkeypatch.setattr(client, "_pending", {})


def in_process(
    source: bytes, filename: str, directory: Path, config_file: str | None = None
) -> list[dict[str, object]]:
    config = load_config([str(directory)], config_file)
    analysis = analyze(source, filename, config, apply_noqa=False)
    return [f.to_dict() for f in analysis.findings]


def project(tmp_path: Path, config: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.session-lint]\n{config}")
    (tmp_path / "app.py").write_bytes(SOURCE)
    return tmp_path


def run_flake8(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    config = flake8_config(cwd)
    return subprocess.run(
        [sys.executable, "-c", PROBE, "--config", str(config), "--select", "SL", *args],
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_answers_equal_in_process(server_dir: Path, tmp_path: Path) -> None:
    root = project(tmp_path)
    os.chdir(root)
    answer = client.analyze_remote(SOURCE, "app.py", str(root), None)
    assert answer is not None
    assert answer["findings"] == in_process(SOURCE, "app.py", root)
    assert [f["code"] for f in answer["findings"]] == ["SL101"]
    assert list(server_dir.glob("*.sock")), "the client started a server"


def test_answers_equal_in_process_on_every_fixture(server_dir: Path, tmp_path: Path) -> None:
    files = sorted((ROOT / "fixtures").rglob("*.py"))
    assert len(files) > 40
    # The repository's config excludes fixtures/, and the server honours it: the
    # fixtures under that config are compared under a copy without the exclude.
    own = ROOT / "pyproject.toml"
    lint = tmp_path / "pyproject.toml"
    lint.write_text(own.read_text().replace('exclude = ["fixtures", ".venv", "build"]', ""))
    assert lint.read_text() != own.read_text()
    reported = 0
    for file in files:
        source = file.read_bytes()
        config_file = str(lint) if find_config_file([str(file)]) == own else None
        answer = client.analyze_remote(source, str(file), str(file.parent), config_file)
        assert answer is not None, file
        expected = in_process(source, str(file), file.parent, config_file)
        assert answer["findings"] == expected, file
        reported += len(expected)
    assert reported > 100, "the fixtures should produce findings"
    assert list(server_dir.glob("*.sock")), "one server answered"


def test_flake8_through_the_server_never_imports_libcst(server_dir: Path, tmp_path: Path) -> None:
    root = project(tmp_path)
    first = run_flake8(root, "app.py")  # starts the server
    second = run_flake8(root, "app.py")
    for proc in (first, second):
        assert proc.returncode == 1, proc.stderr
        assert "SL101" in proc.stdout
    assert first.stdout == second.stdout
    assert "libcst imported: False" in second.stderr
    # Without the server the same findings, analysed in-process.
    off = run_flake8(root, "--session-lint-server=off", "app.py")
    assert off.stdout == second.stdout
    assert "libcst imported: True" in off.stderr
    # An editor's unsaved buffer, on stdin.
    piped = run_flake8(root, "--stdin-display-name=app.py", "-", stdin=SOURCE.decode())
    assert piped.returncode == 1, piped.stderr
    assert piped.stdout == second.stdout
    assert "libcst imported: False" in piped.stderr


def test_prefetched_answer_is_used_only_for_the_same_bytes(
    server_dir: Path, tmp_path: Path
) -> None:
    root = project(tmp_path)
    os.chdir(root)
    client.prefetch("app.py", str(root), None)
    assert list(client._pending) == [str(root / "app.py")]
    same = client.analyze_remote(SOURCE, "app.py", str(root), None)
    assert same is not None and same.get("early") is True
    assert same["findings"] == in_process(SOURCE, "app.py", root)
    # The file changes between the early request and flake8's read: the early
    # answer is for other bytes, so the server analyses the bytes flake8 holds.
    client.prefetch("app.py", str(root), None)
    edited = SOURCE.replace(b"AsyncSession(engine)", b"make_session()")
    answer = client.analyze_remote(edited, "app.py", str(root), None)
    assert answer is not None and "early" not in answer
    assert answer["findings"] == in_process(edited, "app.py", root) == []


def test_a_watched_file_is_analysed_when_it_changes(server_dir: Path, tmp_path: Path) -> None:
    root = project(tmp_path)
    os.chdir(root)
    first = client.analyze_remote(SOURCE, "app.py", str(root), None)
    assert first is not None and "memo" not in first
    # The editor saves: the server analyses the new bytes before flake8 asks.
    edited = SOURCE + (
        b"\n\nasync def other(engine):\n"
        b"    async with AsyncSession(engine) as session:\n"
        b"        await session.commit()\n"
    )
    (root / "app.py").write_bytes(edited)
    time.sleep(3)  # the watcher looks every few ms; the analysis takes a few ms more
    # One request only: a second would find the first one's answer in the memo.
    answer = client.analyze_remote(edited, "app.py", str(root), None)
    assert answer is not None
    assert answer.get("memo") is True, "answered from the watcher's analysis"
    assert answer["findings"] == in_process(edited, "app.py", root)
    assert [f["code"] for f in answer["findings"]] == ["SL101", "SL101"]


def test_config_changes_are_seen_at_once(server_dir: Path, tmp_path: Path) -> None:
    root = project(tmp_path)
    os.chdir(root)
    before = client.analyze_remote(SOURCE, "app.py", str(root), None)
    assert before is not None and before["findings"]
    (root / "pyproject.toml").write_text('[tool.session-lint]\nignore = ["SL101"]\n')
    after = client.analyze_remote(SOURCE, "app.py", str(root), None)
    assert after is not None and after["findings"] == []


def test_config_error_is_one_line_as_in_process(server_dir: Path, tmp_path: Path) -> None:
    root = project(tmp_path, "unknown-key = 1\n")
    through_server = run_flake8(root, "app.py")
    in_proc = run_flake8(root, "--session-lint-server=off", "app.py")
    for proc in (through_server, in_proc):
        # One line, no findings of ours, and flake8 itself carries on (no traceback).
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        assert "unknown [tool.session-lint] key 'unknown-key'" in proc.stderr
    with pytest.raises(client.ServerConfigError, match="unknown-key"):
        client.analyze_remote(SOURCE, str(root / "app.py"), str(root), None)


def test_a_dead_server_means_in_process_analysis_then_a_new_server(
    server_dir: Path, tmp_path: Path
) -> None:
    root = project(tmp_path)
    os.chdir(root)
    assert client.analyze_remote(SOURCE, "app.py", str(root), None) is not None
    (lock,) = server_dir.glob("*.lock")
    pid = server_pid(lock)
    assert pid is not None
    os.killpg(pid, 9)  # a crash of the whole server
    deadline = time.monotonic() + 10
    while server_pid(lock) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    # The stale socket is refused; flake8 still gets its findings.
    proc = run_flake8(root, "app.py")
    assert proc.returncode == 1 and "SL101" in proc.stdout, proc.stderr
    new_pid = server_pid(lock)
    assert new_pid is not None and new_pid != pid, "a new server took over"


def test_no_private_directory_no_server(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # others could plant a socket here
    monkeypatch.setenv("SESSION_LINT_SERVER_DIR", str(shared))
    assert client.socket_path() is None
    (tmp_path / "p").mkdir()
    root = project(tmp_path / "p")
    assert client.analyze_remote(SOURCE, "app.py", str(root), None) is None
    assert not list(shared.iterdir()), "nothing was started there"


def test_when_the_server_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_LINT_SERVER", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert client.wanted() is True
    monkeypatch.setenv("CI", "true")
    assert client.wanted() is False, "one-shot CI runs leave no process behind"
    assert client.wanted("on") is True
    monkeypatch.setenv("SESSION_LINT_SERVER", "on")
    assert client.wanted() is True
    monkeypatch.setenv("SESSION_LINT_SERVER", "off")
    assert client.wanted() is False
    assert client.wanted("off") is False


def test_one_server_per_build(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = client.socket_path()
    assert path is not None and Path(path).parent == server_dir
    # Another build of the tool (an upgrade, an edited rule) gets another server.
    monkeypatch.setattr(client, "tool_fingerprint", lambda: "another build")
    assert client.socket_path() not in (None, path)


def test_concurrent_starts_leave_one_server(server_dir: Path) -> None:
    path = str(server_dir / "one.sock")
    command = [sys.executable, "-m", "session_lint.editors.server", "--socket", path, "--idle", "60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(command, env=env, timeout=60)
        assert second.returncode == 0, "the second start leaves quietly"
        assert first.poll() is None, "the first keeps serving"
        assert client.stop_server(path)
        assert first.wait(timeout=30) == 0
        assert not os.path.exists(path), "a stopped server removes its socket"
    finally:
        if first.poll() is None:
            first.kill()


def test_idle_server_exits_by_itself(server_dir: Path, tmp_path: Path) -> None:
    path = str(server_dir / "idle.sock")
    server = subprocess.Popen(
        [sys.executable, "-m", "session_lint.editors.server", "--socket", path, "--idle", "1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.wait(timeout=60) == 0
        assert not os.path.exists(path)
    finally:
        if server.poll() is None:
            server.kill()


def test_an_early_request_nobody_collects_does_not_block_the_server(
    server_dir: Path, tmp_path: Path
) -> None:
    path = str(server_dir / "single.sock")
    server = subprocess.Popen(
        [sys.executable, "-m", "session_lint.editors.server", "--socket", path],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        root = project(tmp_path)
        os.chdir(root)
        early = client._connect(path)
        assert early is not None
        early.sendall(wire.request("app.py", str(root), None, command="analyze-path"))
        early.close()  # flake8 excluded the file, or exited
        late = client._connect(path)
        assert late is not None
        late.sendall(wire.request("app.py", str(root), None, SOURCE))
        answer = client._receive(late)
        assert answer is not None and [f["code"] for f in answer["findings"]] == ["SL101"]
    finally:
        client.stop_server(path)
        server.wait(timeout=30)


def test_a_server_that_cannot_start_costs_no_wait(
    server_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path)
    os.chdir(root)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the server "crashes" at once
    start = time.monotonic()
    assert client.analyze_remote(SOURCE, "app.py", str(root), None) is None
    assert time.monotonic() - start < client.START_TIMEOUT / 2
    assert client._given_up, "and this process does not try again"
