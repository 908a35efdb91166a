"""A resident analysis server, so that flake8 in an editor stays quick.

An editor runs flake8 on a file on every save, each time in a new process, and a
new process pays ~0.2 s to import libcst and the rules before it analyses a line.
The server pays that once, and then it keeps ahead of the editor:

- it remembers the files it was asked about lately and, when one of them changes
  on disk (the save that comes before the flake8 run), analyses it at once, so
  the answer is ready or under way when flake8 asks;
- flake8 asks early (:func:`session_lint.editors.client.prefetch`, at option parsing), so
  a file the server does not watch yet is analysed while flake8 starts up;
- answers are kept by the bytes, path and config they are for, and are only
  ever given for exactly those: never a stale one.

It serves flake8 runs on one file (the editor's case; see the plugin); runs on
many files analyse in flake8's own processes, in parallel, as before.

A request is one JSON header line (``cwd``, ``filename``, ``config_dir``,
``config``, ``size``) then ``size`` bytes of source; the answer one JSON line:
``{"findings": [finding, ...], "errors": [...]}`` (each finding as
:meth:`~session_lint.finding.Finding.to_dict` encodes it), or
``{"config_error": message}``, or ``{"error": message}`` for anything else (the
client then analyses in-process). With ``"command": "analyze-path"`` the server
reads and analyses the file itself, then waits on the same connection for a
second message with the bytes flake8 checks, and answers for those.

Lifetime: one server per tool build and interpreter (the socket's name is their
fingerprint, so an upgraded tool never talks to an old server); a lock file
(holding the pid) makes concurrent starts harmless; the server exits after
``--idle`` seconds without a request; ``--stop`` ends it at once.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from session_lint.editors import client, wire
from session_lint.editors.file_events import FileEvents
from session_lint.editors.wire import MAX_SOURCE, Answer, Request, read_message

if TYPE_CHECKING:
    from session_lint.editors.resident import WarmAnalysis

_MEMO_SIZE = 64
_WATCHED = 16  # the files of the last requests: an editor's open files
_WATCH_FOR = 1800.0  # seconds a file stays watched after its last request
_LOOK_EVERY = 1.0  # seconds: a look at the watched files even without a file event
_FOLLOW_UP_TIMEOUT = 120.0  # from flake8's option parsing to its check of the file
_SAMPLE = b"""\
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

engine = create_async_engine("postgresql+asyncpg://db/app")


async def handler(session: AsyncSession) -> None:
    async with session.begin():
        await session.execute("select 1")
"""


@dataclass
class Watched:
    request: Request
    last_request: float
    seen: tuple[int, int] | None  # (mtime_ns, size) last analysed


class Server:
    def __init__(
        self,
        listener: socket.socket,
        idle: float,
        socket_path: str | None = None,
        identity: int | None = None,
    ) -> None:
        self.listener = listener
        self.idle = idle
        # The socket this server answers on (path, inode): once it is deleted or
        # replaced, no client can reach this server, so it exits.
        self.socket_path = socket_path
        self.identity = identity
        self.last_request = time.monotonic()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        # Made on first use: the flake8 process imports this module, not libcst.
        self._warm: WarmAnalysis | None = None
        self._memo: OrderedDict[tuple[str, ...], Answer] = OrderedDict()
        self._running: dict[tuple[str, ...], threading.Event] = {}
        self._watched: OrderedDict[str, Watched] = OrderedDict()
        self._events = FileEvents()

    # -- serving ------------------------------------------------------------------
    def serve_forever(self) -> None:
        threading.Thread(target=self._watch, name="watch", daemon=True).start()
        self.listener.settimeout(1.0)
        while not self.stopping.is_set():
            if time.monotonic() - self.last_request > self.idle or self._unreachable():
                return
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed: stopping
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _unreachable(self) -> bool:
        if self.socket_path is None:
            return False
        try:
            return os.stat(self.socket_path).st_ino != self.identity
        except FileNotFoundError:
            return True
        except OSError:
            return False

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30.0)
            reader = conn.makefile("rb")
            try:
                header, source = read_message(reader)
            except (OSError, ValueError) as exc:
                _send(conn, {"error": f"bad request: {exc}"})
                return
            self.last_request = time.monotonic()
            command = header.get("command")
            if command == "stop":
                _send(conn, {"stopped": True})
                self.stop()
                return
            try:
                request = Request.from_header(header)
                if command == "analyze-path":
                    answer = self._answer_early(conn, reader, request)
                    if answer is None:
                        return  # nobody came back for it (flake8 skipped the file)
                else:
                    answer = self.answer(request, source)
            except Exception as exc:  # the client falls back in-process
                answer = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc(file=sys.stderr)
            _send(conn, answer)

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()

    def _answer_early(
        self, conn: socket.socket, reader: BinaryIO, request: Request
    ) -> Answer | None:
        """Analyse the file as it is on disk now, then wait for the bytes flake8
        really checks: the same bytes get this answer, others their own."""
        on_disk = _read_file(request.path)
        answer = self.answer(request, on_disk)
        conn.settimeout(_FOLLOW_UP_TIMEOUT)
        try:
            _, source = read_message(reader)
        except (OSError, ValueError):
            return None
        if source == on_disk:
            return {**answer, "early": True}
        return self.answer(request, source)

    # -- answers ------------------------------------------------------------------
    def answer(self, request: Request, source: bytes, *, watch: bool = True) -> Answer:
        """The findings for these bytes at this path, analysed once: a request for
        bytes under analysis (by the watcher, say) waits for that analysis."""
        from session_lint.project.config import ConfigError, load_config
        from session_lint.project.discovery import is_excluded

        if watch:
            self._remember(request)
        try:
            config = load_config([request.config_dir], request.config, cwd=request.cwd)
        except ConfigError as exc:
            return {"config_error": str(exc)}
        if is_excluded(request.path, config):
            return {"findings": [], "errors": []}  # as the plugin does in-process
        key = (
            os.path.realpath(request.path),
            hashlib.sha256(source).hexdigest(),
            config.root,
            config.fingerprint(),
        )
        while True:
            with self._lock:
                cached = self._memo.get(key)
                if cached is not None:
                    self._memo.move_to_end(key)
                    return {**cached, "memo": True}  # "memo": for tests and curious people
                running = self._running.get(key)
                if running is None:
                    done = self._running[key] = threading.Event()
                    break
            running.wait(timeout=60.0)
            with self._lock:
                if key not in self._memo:  # that analysis failed: do it here
                    self._running.pop(key, None)
        try:
            answer = self._analyze(request, source, config)
            with self._lock:
                if not answer["errors"]:
                    self._memo[key] = answer
                    while len(self._memo) > _MEMO_SIZE:
                        self._memo.popitem(last=False)
            return answer
        finally:
            with self._lock:
                self._running.pop(key, None)
            done.set()

    def _analyze(self, request: Request, source: bytes, config: Any) -> Answer:
        # The analysis the language server runs too (one at a time, deep files
        # allowed as in the CLI); the config is loaded fresh for every request
        # above, so an edited pyproject.toml is seen without a file event.
        if self._warm is None:
            from session_lint.editors.resident import WarmAnalysis

            self._warm = WarmAnalysis()
        # An absolute path, since this process's working directory is not the
        # client's; the encoded findings do not hold it.
        analysis = self._warm.analyze(source, request.path, config, apply_noqa=False)
        return {
            "findings": [f.to_dict() for f in analysis.findings],
            "errors": analysis.errors,
        }

    # -- watching -----------------------------------------------------------------
    def _remember(self, request: Request) -> None:
        path = request.path
        with self._lock:
            entry = self._watched.pop(path, None)
            seen = entry.seen if entry is not None else _stat(path)
            self._watched[path] = Watched(request, time.monotonic(), seen)
            while len(self._watched) > _WATCHED:
                self._watched.popitem(last=False)
        self._events.watch(os.path.dirname(path))

    def _watch(self) -> None:
        """Analyse a watched file as soon as it changes on disk: the editor saves,
        then starts flake8, which needs ~0.1 s before it asks. Woken by file
        events (inotify) where there are, else by polling."""
        while not self.stopping.is_set():
            self._events.wait(_LOOK_EVERY)
            now = time.monotonic()
            with self._lock:
                entries = list(self._watched.items())
            for path, entry in entries:
                if now - entry.last_request > _WATCH_FOR:
                    with self._lock:
                        self._watched.pop(path, None)
                    continue
                seen = _stat(path)
                if seen is None or seen == entry.seen:
                    continue
                entry.seen = seen
                try:
                    self.answer(entry.request, _read_file(path), watch=False)
                except Exception:  # a request for it will say what is wrong
                    traceback.print_exc(file=sys.stderr)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        data = file.read(MAX_SOURCE + 1)
    if len(data) > MAX_SOURCE:
        raise ValueError("source too large")
    return data


def _send(conn: socket.socket, answer: Answer) -> None:
    try:
        conn.sendall(wire.answer(answer))
    except OSError:
        pass  # the client gave up; it analyses in-process


def _warm_up() -> None:
    from session_lint.analyzer import analyze
    from session_lint.project.config import Config

    analyze(_SAMPLE, "warm_up.py", Config(root=os.getcwd()))


def serve(socket_path: str, *, idle: float) -> int:
    lock_path = socket_path + ".lock"
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
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
    identity = os.stat(socket_path).st_ino
    server = Server(listener, idle, socket_path, identity)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    try:
        server.serve_forever()
    finally:
        listener.close()
        try:
            if os.stat(socket_path).st_ino == identity:
                os.unlink(socket_path)
        except OSError:
            pass
        os.close(lock_fd)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m session_lint.editors.server",
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
    return serve(path, idle=args.idle)


if __name__ == "__main__":
    raise SystemExit(main())
