"""Holding server connections: how the doctor steers transactions onto other backends.

A transaction pooler must give a transaction a server connection nobody else
is using. Clients that each hold an open transaction therefore occupy
backends, and the next transaction (anyone's) runs somewhere else. The same
trick lets the cleanup reach a given backend: keep opening holders until one
lands on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from .model import Cleanup
from .target import DoctorError, Target

__all__ = ["PROBE_SETTING", "READ_BACKEND", "Holders", "Seen", "sweep"]

T = TypeVar("T")

#: A custom (placeholder) setting: it has no effect on any query, so a leftover
#: value could not change anyone's results.
PROBE_SETTING = "session_runtime.doctor_probe"
READ_BACKEND = "SELECT pg_backend_pid() AS pid, current_setting($1, true) AS probe"


@dataclass(frozen=True)
class Seen:
    pid: int
    probe: str | None


async def read_backend(conn: Any) -> Seen:
    row = await conn.fetchrow(READ_BACKEND, PROBE_SETTING)
    return Seen(int(row["pid"]), row["probe"])


async def _finish(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task


class Holders:
    """Clients holding open transactions; ``wait`` bounds how long one may queue for a server."""

    def __init__(self, target: Target, wait: float) -> None:
        self.target = target
        self.wait = wait
        self.conns: list[Any] = []
        self.seen: list[Seen] = []
        #: A holder queued for a server longer than ``wait``: the pool is exhausted.
        self.exhausted = False

    async def add(self) -> Seen | None:
        """One more client with an open transaction; None when it could not get a server."""
        conn = await self.target.connect()

        async def begin() -> Seen:
            await conn.execute("BEGIN")
            return await read_backend(conn)

        task = asyncio.ensure_future(begin())
        done, _ = await asyncio.wait({task}, timeout=self.wait)
        if not done:
            # Closing the socket drops the queued client; nothing ran on a server.
            conn.terminate()
            await _finish(task)
            self.exhausted = True
            return None
        try:
            seen = task.result()
        except Exception:
            conn.terminate()
            raise
        self.conns.append(conn)
        self.seen.append(seen)
        return seen

    async def run_while_held(self, coro: Coroutine[Any, Any, T]) -> tuple[T, bool]:
        """Run ``coro`` while the holders hold; if it queues past ``wait``, release them first.

        Returns the result and whether it had to wait for the release.
        """
        if self.exhausted:
            # The pool is full: ``coro`` would only queue for ``wait`` first.
            await self.release()
            return await asyncio.wait_for(coro, self.target.timeout), True
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=self.wait)
        if done:
            return task.result(), False
        await self.release()
        try:
            return await asyncio.wait_for(task, self.target.timeout), True
        except asyncio.TimeoutError:
            raise DoctorError(
                f"a probe transaction got no server connection within {self.target.timeout:g} s"
            ) from None

    async def release(self) -> None:
        """COMMIT (so a RESET done inside sticks) and disconnect every holder."""
        conns, self.conns = self.conns, []
        for conn in conns:
            try:
                await asyncio.wait_for(conn.execute("COMMIT"), self.target.timeout)
                await asyncio.wait_for(conn.close(), self.target.timeout)
            except Exception:
                conn.terminate()


async def _clean(conn: Any, seen: Seen, tag: str, token: str, cleanup: Cleanup) -> None:
    names = await conn.fetch(
        "SELECT name FROM pg_prepared_statements "
        "WHERE starts_with(name, '__asyncpg_') AND strpos(statement, $1) > 0",
        tag,
    )
    for row in names:
        name = str(row["name"]).replace('"', '""')
        await conn.execute(f'DEALLOCATE "{name}"')
        cleanup.statements_deallocated += 1
    cleanup.other_statements += int(
        await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
    )
    if seen.probe == token:
        await conn.execute(f"RESET {PROBE_SETTING}")
        cleanup.settings_reset += 1


async def sweep(
    target: Target,
    *,
    backends: set[int],
    tag: str,
    token: str,
    cleanup: Cleanup,
    wait: float,
    max_clients: int = 16,
) -> None:
    """Behind a transaction pooler: visit ``backends`` and remove what the doctor left there.

    On each backend reached: ``DEALLOCATE`` asyncpg statements whose text
    carries ``tag``, and ``RESET`` the probe setting if it holds ``token``.
    Stops when every backend was visited, when the pooler hands out a
    backend already visited or none within ``wait`` (no more to reach), or
    after ``max_clients``.
    """
    holders = Holders(target, wait)
    visited: set[int] = set()
    try:
        while backends - visited and len(holders.conns) < max_clients:
            seen = await holders.add()
            if seen is None or seen.pid in visited:
                break
            visited.add(seen.pid)
            await _clean(holders.conns[-1], seen, tag, token, cleanup)
    finally:
        await holders.release()
    cleanup.backends_visited += len(visited)
    missed = sorted(backends - visited)
    if missed:
        cleanup.notes.append(
            f"could not reach backend(s) {', '.join(map(str, missed))} to clean up "
            f"(the pooler kept them busy); anything of the doctor's there is the placeholder "
            f"setting {PROBE_SETTING} or a statement tagged {tag!r}, and goes with that server connection"
        )
