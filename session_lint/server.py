"""A resident analysis server, so that flake8 in an editor stays quick.

An editor runs flake8 on every save, each time in a new process, and a new
process pays ~0.2 s to import libcst and the rules before it analyses a line.
The server pays that once: it imports everything, analyses a small sample (so
lazy imports and compiled patterns are warm), then forks a few workers that
share that state and take requests on one Unix socket. The flake8 plugin
(:mod:`session_lint.client`) starts it on first use and falls back to analysing
in-process whenever it cannot get an answer.

A request is one JSON header line (``cwd``, ``filename``, ``config_dir``,
``config``, ``size``) followed by ``size`` bytes of source; the answer is one JSON
line: ``{"findings": [[line, column, code, message], ...], "errors": [...]}``, or
``{"config_error": message}``, or ``{"error": message}`` for anything else. With
``"command": "analyze-path"`` the server reads and analyses the file itself, then
waits on the same connection for a second message carrying the bytes flake8
checks: the answer goes out for those bytes, precomputed if they are the ones it
read (see :func:`session_lint.client.prefetch`).

Lifetime: one server per tool build and interpreter (the socket's name is their
fingerprint, so an upgraded tool never talks to an old server); a lock file
makes concurrent starts harmless; workers exit when no request came for
``--idle`` seconds (they share the lock file's mtime as "last request"), and the
server exits when its workers have; ``--stop`` ends it at once.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import gc
import hashlib
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, BinaryIO

from session_lint import client

PROTOCOL = 1
MAX_HEADER = 64 * 1024
MAX_SOURCE = 64 * 1024 * 1024
_IDLE_EXIT = 0  # a worker with nothing to do
_RECYCLE_EXIT = 3  # a worker that served its share: the parent forks a fresh one
_REQUESTS_PER_WORKER = 2000  # bounds whatever a long-lived process might accumulate
_MEMO_SIZE = 128
_FOLLOW_UP_TIMEOUT = 120.0  # from flake8's option parsing to its check of the file
_SAMPLE = b"""\
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

engine = create_async_engine("postgresql+asyncpg://db/app")


async def handler(session: AsyncSession) -> None:
    async with session.begin():
        await session.execute("select 1")
"""


class Worker:
    """Answers requests on the shared listening socket, one at a time."""

    def __init__(self, listener: socket.socket, activity_file: str, idle: float) -> None:
        self.listener = listener
        self.activity_file = activity_file
        self.idle = idle
        self.memo: OrderedDict[tuple[str, ...], dict[str, Any]] = OrderedDict()

    def run(self) -> int:
        self.listener.settimeout(min(self.idle, 30.0))
        served = 0
        while served < _REQUESTS_PER_WORKER:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                if self._idle_for() >= self.idle:
                    return _IDLE_EXIT
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return _IDLE_EXIT  # the listener is gone: the server is stopping
            with conn:
                self._serve(conn)
            served += 1
            self._touch()
        return _RECYCLE_EXIT

    def _idle_for(self) -> float:
        try:
            return time.time() - os.stat(self.activity_file).st_mtime
        except OSError:
            return float("inf")  # the server's files are gone: stop

    def _touch(self) -> None:
        try:
            os.utime(self.activity_file)
        except OSError:
            pass

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30.0)
        reader = conn.makefile("rb")
        try:
            header, source = _read_message(reader)
        except (OSError, ValueError) as exc:
            _send(conn, {"error": f"bad request: {exc}"})
            return
        command = header.get("command")
        if command == "stop":
            _send(conn, {"stopped": True})
            os.kill(os.getppid(), signal.SIGTERM)
            return
        try:
            if command == "analyze-path":
                answer = self._answer_early(conn, reader, header)
                if answer is None:
                    return  # the client never came back for it (flake8 skipped the file)
            else:
                answer = self._answer(header, source)
        except Exception as exc:  # the client falls back in-process
            answer = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)
        _send(conn, answer)

    def _answer_early(
        self, conn: socket.socket, reader: BinaryIO, header: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Analyse the file as it is on disk now, then wait for the bytes flake8
        really checks: the same bytes get this answer, others their own."""
        os.chdir(header["cwd"])
        with open(header["filename"], "rb") as file:
            on_disk = file.read(MAX_SOURCE + 1)
        if len(on_disk) > MAX_SOURCE:
            raise ValueError("source too large")
        answer = self._answer(header, on_disk)
        conn.settimeout(_FOLLOW_UP_TIMEOUT)
        try:
            _, source = _read_message(reader)
        except (OSError, ValueError):
            return None
        if source == on_disk:
            return {**answer, "early": True}  # "early": for tests and curious people
        return self._answer(header, source)

    def _answer(self, header: dict[str, Any], source: bytes) -> dict[str, Any]:
        from session_lint.analyzer import analyze
        from session_lint.config import ConfigError, load_config

        # The plugin resolves paths as flake8's process sees them: relative
        # filenames and "no config found, root = cwd" included.
        os.chdir(header["cwd"])
        try:
            config = load_config([header["config_dir"]], header.get("config"))
        except ConfigError as exc:
            return {"config_error": str(exc)}
        filename: str = header["filename"]
        key = (
            hashlib.sha256(source).hexdigest(),
            filename,
            header["cwd"],
            config.root,
            config.fingerprint(),
        )
        cached = self.memo.get(key)
        if cached is not None:
            self.memo.move_to_end(key)
            return cached
        analysis = analyze(source, filename, config, apply_noqa=False)
        answer = {
            "findings": [[f.line, f.column, f.code, f.message] for f in analysis.findings],
            "errors": analysis.errors,
        }
        if not analysis.errors:
            self.memo[key] = answer
            if len(self.memo) > _MEMO_SIZE:
                self.memo.popitem(last=False)
        return answer


def _read_message(reader: BinaryIO) -> tuple[dict[str, Any], bytes]:
    line = reader.readline(MAX_HEADER)
    if not line.endswith(b"\n"):
        raise ValueError("no header line")
    header = json.loads(line)
    if not isinstance(header, dict) or header.get("protocol") != PROTOCOL:
        raise ValueError("unknown protocol")
    size = int(header.get("size", 0))
    if not 0 <= size <= MAX_SOURCE:
        raise ValueError("source too large")
    source = reader.read(size)
    if len(source) != size:
        raise ValueError("short source")
    return header, source


def _send(conn: socket.socket, answer: dict[str, Any]) -> None:
    try:
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass  # the client gave up; it analyses in-process


def _warm_up() -> None:
    from session_lint.analyzer import analyze
    from session_lint.config import Config

    analyze(_SAMPLE, "warm_up.py", Config(root=os.getcwd()))


def serve(socket_path: str, *, idle: float, workers: int) -> int:
    lock_path = socket_path + ".lock"
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another server for this build is starting or running
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())  # who holds it, for people and tests
    _warm_up()
    try:
        os.unlink(socket_path)  # a socket left by a server that died
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(socket_path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    os.utime(lock_path)
    identity = os.stat(socket_path).st_ino
    gc.collect()
    gc.freeze()  # the warm heap stays shared with the workers instead of copied
    children: set[int] = set()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _kill(pid)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    crashes: list[float] = []
    try:
        for _ in range(workers):
            children.add(_fork_worker(listener, lock_path, idle))
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            children.discard(pid)
            if stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == _IDLE_EXIT:
                continue
            if code != _RECYCLE_EXIT:
                now = time.monotonic()
                crashes = [t for t in crashes if now - t < 60] + [now]
                if len(crashes) > 5:  # something is wrong: let clients fall back
                    stop(signal.SIGTERM, None)
                    continue
            children.add(_fork_worker(listener, lock_path, idle))
    finally:
        listener.close()
        try:
            if os.stat(socket_path).st_ino == identity:
                os.unlink(socket_path)
        except OSError:
            pass
        os.close(lock_fd)
    return 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _fork_worker(listener: socket.socket, activity_file: str, idle: float) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
        code = Worker(listener, activity_file, idle).run()
    except BaseException:  # report, then leave without the parent's cleanup
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stderr.flush()
        os._exit(code)  # never run the parent's cleanup in a child


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m session_lint.server",
        description="The resident analysis server behind the flake8 plugin (started on "
        "demand; you rarely need to run this yourself).",
    )
    parser.add_argument(
        "--socket", default=None, help="socket path (default: this build's, see --where)"
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=client.IDLE_SECONDS,
        help="exit after this many seconds without a request (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, os.cpu_count() or 1),
        help="requests answered at once (default: the CPU count)",
    )
    parser.add_argument("--stop", action="store_true", help="stop this build's server")
    parser.add_argument("--where", action="store_true", help="print this build's socket path")
    args = parser.parse_args(argv)
    path = args.socket or client.socket_path()
    if path is None:
        print("session-lint server: no private directory for the socket", file=sys.stderr)
        return 2
    if args.where:
        print(path)
        return 0
    if args.stop:
        stopped = client.stop_server(path)
        print("stopped" if stopped else "no server was running")
        return 0
    return serve(path, idle=args.idle, workers=args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
