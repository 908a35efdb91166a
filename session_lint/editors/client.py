"""The flake8 plugin's side of the analysis server (:mod:`session_lint.editors.server`).

Stdlib only and cheap to import: importing this must not cost what the server
exists to save. :func:`analyze_remote` answers from the server, starting it
when none runs; ``None`` means "no answer, analyse in-process", which is always
correct, only slower.

The plugin uses the server when flake8 checks one file (the editor's case), and
then: with ``SESSION_LINT_SERVER=off`` (or ``0``, ``false``, ``no``) never, with
``on`` always, and by default (``auto``) unless under CI (a ``CI`` environment
variable, set by the common CI services), where every run is a one-shot run and
a process left behind helps nobody. The socket lives in a directory only this
user can enter: ``$SESSION_LINT_SERVER_DIR``, else ``$XDG_RUNTIME_DIR/session-lint``,
else ``<tmp>/session-lint-<uid>``; a directory others could write to is never used.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time
import zlib
from typing import Any

from session_lint.editors import wire
from session_lint.fingerprint import tool_fingerprint

IDLE_SECONDS = 900.0
START_TIMEOUT = 10.0  # a cold start on a busy machine; then analyse in-process
ANSWER_TIMEOUT = 120.0  # a huge file on a busy machine
_OFF = frozenset({"0", "off", "false", "no"})
_ON = frozenset({"1", "on", "true", "yes"})
# Set when the server could not be reached or started: this process stops trying.
_given_up = False
# Answers asked for early (see :func:`prefetch`), by absolute path.
_pending: dict[str, socket.socket] = {}


class ServerConfigError(Exception):
    """The server could not load the configuration; the message says why."""


def wanted(setting: str | None = None) -> bool:
    """Whether to use the server: ``setting`` (the flake8 option) or the
    environment, ``auto`` meaning "unless under CI"."""
    value = (setting or os.environ.get("SESSION_LINT_SERVER") or "auto").strip().lower()
    if value in _OFF or os.name != "posix" or not hasattr(socket, "AF_UNIX"):
        return False
    if value in _ON:
        return True
    return os.environ.get("CI", "").strip().lower() in ("", "0", "false")


def socket_path() -> str | None:
    """This build's socket in a private directory, or None if there is none."""
    directory = os.environ.get("SESSION_LINT_SERVER_DIR")
    if not directory:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.isdir(runtime):
            directory = os.path.join(runtime, "session-lint")
        else:
            tmp = os.environ.get("TMPDIR") or "/tmp"
            directory = os.path.join(tmp, f"session-lint-{os.getuid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError:
        return None
    # Anyone who can write there could plant a socket that answers for us.
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        return None
    # zlib, not hashlib: OpenSSL's import alone would cost more than the rest.
    # The interpreter's real path, not as typed: `python3` and `python` of one
    # environment are one interpreter (and one server); the prefix keeps two
    # virtual environments over the same interpreter apart.
    interpreter = os.path.realpath(sys.executable)
    build = f"{tool_fingerprint()}:{interpreter}:{os.path.realpath(sys.prefix)}:{sys.version}"
    build_bytes = build.encode()
    name = f"{zlib.crc32(build_bytes):08x}{zlib.adler32(build_bytes):08x}"
    return os.path.join(directory, f"{name}.sock")


def prefetch(filename: str, config_dir: str, config_file: str | None) -> None:
    """Ask now for the analysis of the file on disk, to be collected by
    :func:`analyze_remote`: the server works on it while flake8 starts up and runs
    its other checks. Only worth it for a run on one file (the editor's case)."""
    conn = _server()
    if conn is None:
        return
    try:
        conn.sendall(wire.request(filename, config_dir, config_file, command="analyze-path"))
    except OSError:
        conn.close()
        return
    _pending[os.path.abspath(filename)] = conn


def analyze_remote(
    source: bytes, filename: str, config_dir: str, config_file: str | None
) -> dict[str, Any] | None:
    """The server's answer for this file, or None to analyse in-process.

    Raises :class:`ServerConfigError` when the configuration is broken, as the
    in-process analysis would."""
    early = _pending.pop(os.path.abspath(filename), None)
    if early is not None:
        # The server answers for these bytes: precomputed if the file it read
        # holds them, analysed now if it changed or flake8 decoded it otherwise.
        try:
            early.sendall(wire.follow_up(source))
        except OSError:
            early.close()
        else:
            answer = _receive(early)
            if answer is not None:
                return _checked(answer)
    conn = _server()
    if conn is None:
        return None
    try:
        conn.sendall(wire.request(filename, config_dir, config_file, source))
    except OSError:
        conn.close()
        return None
    answer = _receive(conn)
    return None if answer is None else _checked(answer)


def _server() -> socket.socket | None:
    """A connection to this build's server, started if need be."""
    global _given_up
    if _given_up:
        return None
    path = socket_path()
    conn = None if path is None else (_connect(path) or _start_and_connect(path))
    if conn is None:
        _given_up = True
    return conn


def _checked(answer: dict[str, Any]) -> dict[str, Any] | None:
    if "config_error" in answer:
        raise ServerConfigError(str(answer["config_error"]))
    if "error" in answer or "findings" not in answer:
        return None
    return answer


def stop_server(path: str) -> bool:
    conn = _connect(path)
    if conn is None:
        return False
    try:
        conn.sendall(wire.stop())
    except OSError:
        conn.close()
        return False
    if _receive(conn) is None:
        return False
    # Wait until it is gone, so a test (or an upgrade) can rely on it.
    deadline = time.monotonic() + 10.0
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _connect(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    return conn


def _start_and_connect(path: str) -> socket.socket | None:
    import subprocess

    log = path[: -len(".sock")] + ".log"
    try:
        with open(log, "ab") as err:
            server = subprocess.Popen(
                [sys.executable, "-m", "session_lint.editors.server", "--socket", path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # outlives this flake8 run, not tied to its terminal
                close_fds=True,
            )
    except OSError:
        return None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        conn = _connect(path)
        if conn is not None:
            return conn
        # Exit 0: another server of this build holds the lock and is starting.
        # Anything else: it broke (see the log); analyse in-process, now.
        if server.poll() not in (None, 0):
            return None
        time.sleep(0.01)
    return None


def _receive(conn: socket.socket) -> dict[str, Any] | None:
    """One JSON line from the server, then the connection is closed."""
    with conn:
        conn.settimeout(ANSWER_TIMEOUT)
        chunks: list[bytes] = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if chunk.endswith(b"\n"):
                    break
        except OSError:
            return None
    return wire.read_answer(b"".join(chunks))
