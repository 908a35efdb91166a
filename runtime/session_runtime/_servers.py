"""Throwaway PostgreSQL and pgbouncer processes for tests and benchmarks.

Kept apart from the pytest plugin so a benchmark script can start the same
servers without pytest. Standard library only, except pytest-postgresql's
executor (imported lazily) for the PostgreSQL side.

Measured pitfalls this module handles:

* ``initdb``, ``pg_ctl`` and pgbouncer refuse to run as root. As root, the
  servers run as an unprivileged user (``postgres`` when it exists, else
  ``nobody``); pg_ctl goes through a tiny generated wrapper script that drops
  privileges, because pytest-postgresql runs its ``executable`` as the
  current user.
* pytest's temp dirs are mode 0700 and root-owned: the wrapper hands the data
  dir's parent to the server user and adds search (``o+x``) permission to its
  ancestors, nothing more.
* pgbouncer drops to ``user=`` before it opens its log and pid files, so its
  dir belongs to that user; with ``auth_type = trust`` it still needs the user
  in ``auth_file``.
* pytest-postgresql's executor (mirakuru) returns from ``start()`` as soon as
  the TCP port accepts a connection, without waiting for its ``pg_ctl start
  -w``. The postmaster listens before crash recovery is over, and until then
  every connection is refused with SQLSTATE 57P03 ("the database system is
  not yet accepting connections"). :meth:`PostgresServer.start` therefore
  waits for pg_ctl to exit and then for a real connection to be accepted.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "WRAPPER_PATH",
    "BinaryMissingError",
    "PgBouncer",
    "PostgresServer",
    "ServerStartError",
    "accepts_connections",
    "find_binary",
    "free_port",
    "pg_ctl_executable",
    "server_user",
]


class BinaryMissingError(RuntimeError):
    """A server binary (pg_ctl, initdb, pgbouncer) is not installed."""


class ServerStartError(RuntimeError):
    """A server did not come up (in time); the message ends with its log's last lines."""


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: highest version wins.
    digits = re.findall(r"\d+", path.parent.name)
    return tuple(int(d) for d in digits) or (0,)


def find_binary(name: str) -> str:
    """Locate a PostgreSQL or pgbouncer binary.

    Looks on ``PATH``, then ``/usr/lib/postgresql/*/bin`` (highest version),
    then ``/usr/sbin`` and ``/usr/local/sbin`` (Debian puts pgbouncer there).

    Raises:
        BinaryMissingError: with a one-line reason naming what to install.
    """
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")),
        key=_version_key,
        reverse=True,
    )
    candidates += [Path("/usr/sbin"), Path("/usr/local/sbin"), Path("/usr/local/bin")]
    for directory in candidates:
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    package = "pgbouncer" if name == "pgbouncer" else "postgresql"
    raise BinaryMissingError(
        f"{name} not found on PATH or under /usr/lib/postgresql/*/bin (install {package})"
    )


def server_user() -> pwd.struct_passwd | None:
    """The unprivileged user servers run as, or None when not running as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise BinaryMissingError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with code {proc.returncode} before listening on {port}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.1f}s")
        time.sleep(0.02)


def _message(payload: bytes) -> dict[str, str]:
    """Fields of an ErrorResponse/NoticeResponse body: {'C': sqlstate, 'M': message, ...}."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def accepts_connections(
    host: str, port: int, user: str, dbname: str = "postgres", timeout: float = 5.0
) -> str | None:
    """One real connection attempt: None if the server accepts it, else why not.

    Sends a protocol 3.0 StartupMessage and reads the answer, with
    ``pg_isready``'s reading of it: the server accepts connections unless
    it refuses the TCP connection, closes it, or answers with SQLSTATE 57P03
    (``cannot_connect_now``: starting up, in crash recovery, not yet
    consistent, shutting down). An authentication request or any other error
    (a missing database or role) comes from a server that accepts
    connections. Standard library only, usable before any driver is
    imported and from inside an event loop.
    """
    params = f"user\0{user}\0database\0{dbname}\0\0".encode()
    startup = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(startup)
            stream = sock.makefile("rb")
            while True:
                header = stream.read(5)
                if len(header) < 5:
                    return "the server closed the connection during the startup handshake"
                kind, length = header[:1], struct.unpack("!i", header[1:])[0]
                payload = stream.read(length - 4)
                if kind == b"E":
                    fields = _message(payload)
                    if fields.get("C") == "57P03":
                        return f"{fields.get('C')}: {fields.get('M', '')}"
                    return None
                if kind == b"R" and struct.unpack("!i", payload[:4])[0] != 0:
                    return None  # asks for a password: it accepts connections
                if kind == b"Z":  # ReadyForQuery: a working session
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X\0\0\0\4")  # Terminate
                    return None
                # AuthenticationOk, ParameterStatus, BackendKeyData, notices: read on.
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def make_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Give ``user`` ownership of ``path`` and search permission on its ancestors."""
    os.chown(path, user.pw_uid, user.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


# The wrapper runs as root (pytest-postgresql calls its executable directly),
# prepares the directories pg_ctl will write to, then drops to the server user.
_WRAPPER = """\
import os, pwd, stat, sys
from pathlib import Path
REAL = {real!r}
USER = {user!r}
args = sys.argv[1:]
if USER is None:
    os.execv(REAL, [REAL, *args])
pw = pwd.getpwnam(USER)

def reachable(path):
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)

if args and args[0] in ("initdb", "start"):
    for i, arg in enumerate(args[:-1]):
        if arg in ("-D", "--pgdata", "-l", "--log"):
            target = Path(args[i + 1]).absolute()
            parent = target.parent
            if parent.stat().st_uid == 0:
                reachable(parent)
            if target.exists() and target.stat().st_uid == 0:
                reachable(target)
os.chdir("/")
os.setgroups([])
os.setgid(pw.pw_gid)
os.setuid(pw.pw_uid)
os.environ["HOME"] = pw.pw_dir
os.execv(REAL, [REAL, *args])
"""


def _wrapper_path() -> Path:
    # Fixed per process, so the pytest plugin can name it when it builds its
    # postgresql_proc fixture, before anything is written.
    return Path(tempfile.gettempdir()) / f"session-runtime-{os.geteuid()}-{os.getpid()}" / "pg_ctl"


WRAPPER_PATH = str(_wrapper_path())


def pg_ctl_executable() -> str:
    """The ``pg_ctl`` to give pytest-postgresql (``postgresql_proc(executable=...)``).

    A generated wrapper script at :data:`WRAPPER_PATH` (a private temp dir for
    this process, removed at exit) that runs the installed ``pg_ctl``; as
    root, as the unprivileged server user, after handing it the data and log
    dirs.

    Raises:
        BinaryMissingError: pg_ctl is not installed.
    """
    real = find_binary("pg_ctl")
    user = server_user()
    launcher = _wrapper_path()
    directory = launcher.parent
    try:
        directory.mkdir(mode=0o700)
        atexit.register(shutil.rmtree, directory, True)
    except FileExistsError:
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise RuntimeError(f"{directory} exists and is not ours") from None
    script = directory / "pg_ctl.py"
    script.write_text(_WRAPPER.format(real=real, user=user.pw_name if user else None))
    # A shell launcher, so the interpreter path can contain anything.
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    launcher.chmod(0o700)
    return str(launcher)


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free port (pytest-postgresql's executor).

    Its data dir, log and socket live in a private temp dir of its own
    (``tempfile.mkdtemp(prefix="session-runtime-postgresql-")``, owned by the
    server user, removed by :meth:`close`), never under pytest's basetemp:
    every pytest run resets ``/tmp/pytest-of-<user>`` to mode 0700, and an
    unprivileged server whose data dir lies below it then gets "Permission
    denied" (``pg_ctl status`` and ``stop`` fail, so it also outlives the run).
    Pass ``basedir`` to put that dir somewhere else.

    :meth:`stop_server` and :meth:`start` stop and start the same cluster
    again (data kept), for fault tests.
    """

    def __init__(
        self,
        basedir: Path | None = None,
        *,
        user: str = "postgres",
        dbname: str = "postgres",
        host: str = "127.0.0.1",
    ) -> None:
        from pytest_postgresql.executors import PostgreSQLExecutor

        self.port = free_port()
        self.host = host
        self.user = user
        run_as = server_user()
        self.dir = Path(
            tempfile.mkdtemp(
                prefix=f"session-runtime-postgresql-{self.port}-",
                dir=None if basedir is None else str(basedir),
            )
        )
        if run_as is not None:
            make_reachable(self.dir, run_as)
        # Socket in the same private dir: nothing shared in /tmp to collide with.
        self.executor = PostgreSQLExecutor(
            executable=pg_ctl_executable(),
            host=self.host,
            port=self.port,
            datadir=str(self.dir / "data"),
            unixsocketdir=str(self.dir),
            logfile=str(self.dir / "postgresql.log"),
            startparams="-w",
            dbname=dbname,
            user=user,
        )

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """Start the cluster (``initdb`` the first time; later starts keep the data).

        Returns once the server accepts connections, which is what
        ``pg_ctl start -w`` promises, also after a crash (``stop_server("immediate")``):
        the executor itself returns as soon as the port is open, and the
        postmaster opens it before crash recovery is over. So this waits for
        pg_ctl to exit (0: the server reported itself ready), then polls with
        real connection attempts (:func:`accepts_connections`) until one is
        accepted.

        Args:
            timeout: seconds for pg_ctl and the polling together (pg_ctl's
                own default wait, ``PGCTLTIMEOUT``, is 60).

        Raises:
            ServerStartError: pg_ctl failed, or no connection was accepted
                within ``timeout``; the message ends with the server log.
        """
        deadline = time.monotonic() + timeout
        if self not in _started:
            _started.append(self)
        try:
            self.executor.start()
        except Exception as exc:
            raise ServerStartError(
                f"PostgreSQL on port {self.port} did not start: {exc}\n{self.log_tail()}"
            ) from exc
        launcher = self.executor.process
        if launcher is not None:
            try:
                code = launcher.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                raise ServerStartError(
                    f"pg_ctl start -w did not return within {timeout:g} s "
                    f"(port {self.port})\n{self.log_tail()}"
                ) from None
            if code != 0:
                raise ServerStartError(
                    f"pg_ctl start -w exited with {code} (port {self.port})\n{self.log_tail()}"
                )
        pause = 0.02
        while True:
            why = accepts_connections(
                self.host, self.port, self.user, "postgres", timeout=min(timeout, 5.0)
            )
            if why is None:
                return self
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"PostgreSQL on port {self.port} did not accept a connection within "
                    f"{timeout:g} s (last answer: {why})\n{self.log_tail()}"
                )
            # Each refused attempt writes a FATAL line to the server log: back off.
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.2)

    def log_tail(self, lines: int = 30) -> str:
        """The server log's last ``lines`` distinct messages (crash recovery, startup failures).

        A message logged many times (the FATAL line of every refused connection
        attempt) is shown once, where it last occurred, with its count.
        """
        try:
            text = Path(self.executor.logfile).read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        kept: list[str] = []
        counts: dict[str, int] = {}
        for line in reversed(text.splitlines()):
            # "2026-01-01 00:00:00.000 UTC [pid] FATAL:  ...": compare what follows the pid.
            message = line.split("] ", 1)[-1]
            if message in counts:
                counts[message] += 1
                continue
            counts[message] = 1
            kept.append(line)
        shown = []
        for line in reversed(kept[:lines]):
            repeats = counts[line.split("] ", 1)[-1]]
            shown.append(f"{line}  (x{repeats})" if repeats > 1 else line)
        return "\n".join(shown)

    def stop_server(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` (``smart``, ``fast`` or ``immediate``), keeping the data.

        ``immediate`` is a crash as far as clients and the WAL are concerned:
        no shutdown checkpoint, recovery at the next :meth:`start`.
        """
        subprocess.run(
            [self.executor.executable, "stop", "-D", self.executor.datadir, "-m", mode, "-w"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # The server is down: mirakuru's kill() then only forgets the pg_ctl
        # launcher it started, so the next start() launches a new one.
        self.executor.kill()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its dir."""
        with contextlib.suppress(Exception):
            if self.executor.running():
                self.executor.stop()
            else:
                self.executor.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(ValueError):
            _started.remove(self)

    close = stop

    def url(self, dbname: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{dbname}"


class PgBouncer:
    """pgbouncer in front of one PostgreSQL server, in its own temp dir.

    Args:
        server_host, server_port: the PostgreSQL server to pool.
        pool_mode: ``transaction`` (the point of this class) or ``session``.
        pool_size: ``default_pool_size``; small so clients share server
            connections, which is what makes transaction mode bite.
        user: the database user clients log in as (listed in ``auth_file``
            and ``admin_users``, so it can also query the admin console).
        max_client_conn: clients pgbouncer accepts.
        extra: more ``[pgbouncer]`` settings.
    """

    def __init__(
        self,
        server_host: str,
        server_port: int,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 3,
        user: str = "postgres",
        max_client_conn: int = 500,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.binary = find_binary("pgbouncer")
        self.server_host = server_host
        self.server_port = server_port
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.user = user
        self.host = "127.0.0.1"
        self.port = free_port()
        self._run_as = server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="session-runtime-pgbouncer-"))
        if self._run_as is not None:
            make_reachable(self.dir, self._run_as)
        settings = {
            "listen_addr": self.host,
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "userlist.txt"),
            "admin_users": user,
            "pool_mode": pool_mode,
            "default_pool_size": str(pool_size),
            "max_client_conn": str(max_client_conn),
            # asyncpg sends extra_float_digits at startup; pgbouncer refuses
            # unknown startup parameters unless told to ignore them.
            "ignore_startup_parameters": "extra_float_digits",
            "pidfile": str(self.dir / "pgbouncer.pid"),
            "server_login_retry": "1",
        }
        if self._run_as is not None:
            settings["user"] = self._run_as.pw_name
        settings.update(extra or {})
        ini = "[databases]\n"
        ini += f"* = host={server_host} port={server_port}\n\n[pgbouncer]\n"
        ini += "".join(f"{k} = {v}\n" for k, v in settings.items())
        (self.dir / "pgbouncer.ini").write_text(ini)
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        if self._run_as is not None:
            for name in ("pgbouncer.ini", "userlist.txt"):
                os.chown(self.dir / name, self._run_as.pw_uid, self._run_as.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> PgBouncer:
        """Start pgbouncer and wait until it accepts connections."""
        # Own session: a Ctrl-C in the terminal reaches pytest, which stops
        # pgbouncer in teardown, instead of killing it mid-test.
        # The log goes to a file, never a pipe: pgbouncer in the foreground
        # logs every connect to stderr, and an undrained pipe fills up and
        # stalls it.
        with open(self.dir / "pgbouncer.log", "ab") as stderr:
            self._proc = subprocess.Popen(
                [self.binary, str(self.dir / "pgbouncer.ini")],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        if self not in _started:
            _started.append(self)
        try:
            wait_for_port(self.port, timeout, self._proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"pgbouncer did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop pgbouncer (SIGTERM: immediate shutdown, clients are disconnected)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ValueError):
            _started.remove(self)

    def restart(self) -> None:
        """Stop and start again on the same port, like a pooler deploy or crash."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the temp dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, dbname: str = "postgres", driver: str = "asyncpg") -> str:
        """A SQLAlchemy URL through this pgbouncer."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a command on the admin console (``SHOW SERVERS``, ``SHOW POOLS``…).

        The console speaks only the simple query protocol, so this uses
        psycopg's client-side-binding cursor, which sends plain queries.
        """
        import psycopg

        with (
            psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                dbname="pgbouncer",
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,
                connect_timeout=5,
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(command)
            if cur.description is None:
                return []
            names = [col.name for col in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.dir / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# Backstop for anything a crashed test run leaves behind: fixtures stop their
# servers in teardown; this only runs for what is still up at interpreter exit.
_started: list[PgBouncer | PostgresServer] = []


@atexit.register
def _stop_all() -> None:
    # Newest first: pgbouncers before the clusters they front.
    for server in reversed(list(_started)):
        with contextlib.suppress(Exception):
            server.close()
