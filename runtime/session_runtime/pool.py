"""Connection-pool behaviour make_engine() installs: liveness and fail-fast waiting."""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import queue as sqla_queue

from .errors import PoolConnectError

__all__ = ["FailFastQueuePool", "check_alive_on_checkout"]


def check_alive_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool ``checkout`` listener: replace a connection the peer already closed.

    When pgbouncer (or PostgreSQL, or Supavisor) restarts, it closes its
    client sockets; asyncpg's protocol sees the EOF in the event loop and
    ``Connection.is_closed()`` turns true while the connection sits idle in
    the pool. Checking that flag costs no round trip (``pool_pre_ping`` costs
    one, three through a transaction pooler: BEGIN, ping, ROLLBACK). Raising
    ``DisconnectionError`` here makes SQLAlchemy discard the connection and
    check out a fresh one, so the caller never sees the dead socket.
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    closed = is_closed() if callable(is_closed) else bool(getattr(driver, "closed", False))
    if closed:
        raise exc.DisconnectionError(
            "connection was closed by the server or pooler while idle in the pool"
        )


class _Wake:
    """Queue item handed to a waiter: a connect attempt just failed."""

    __slots__ = ("at", "error")

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.at = time.monotonic()


class FailFastQueuePool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` whose waiters learn that connects are failing.

    SQLAlchemy's ``QueuePool`` lets at most ``pool_size + max_overflow``
    connections exist; further callers wait on the queue for one to come
    back. When a connect fails its slot is freed, but nobody is woken: with
    the server down every waiter sleeps the whole ``pool_timeout`` (measured:
    50 callers against a refused port, stock pool with ``pool_timeout=3``:
    30 got the connect error at once, 20 waited 3.0 s for "QueuePool limit
    of size 5 overflow 10 reached"). Here a failed connect wakes a waiter,
    which raises :class:`~session_runtime.errors.PoolConnectError` (caused
    by the connect error) and wakes the next: every caller gets an error
    within one connect timeout.

    The price: when a connect fails while the pool is exhausted, the callers
    queued at that moment fail too instead of waiting for a connection to
    come back. A failed connect almost always means the next ones fail as
    well; failing fast keeps request latency bounded and lets the caller's
    retry policy decide.

    Relies on ``QueuePool`` internals (``_pool``, ``_overflow``,
    ``_inc_overflow``/``_dec_overflow``), unchanged from SQLAlchemy 1.4 to 2.1.
    """

    _waiters = 0
    _wakes_queued = 0

    def _do_get(self) -> ConnectionPoolEntry:
        deadline = time.monotonic() + self._timeout
        while True:
            use_overflow = self._max_overflow > -1
            wait = use_overflow and self._overflow >= self._max_overflow
            record: Any = None
            waiting_since = time.monotonic()
            if wait:
                self._waiters += 1
            try:
                record = self._pool.get(wait, max(deadline - waiting_since, 0.0))
            except sqla_queue.Empty:
                pass
            finally:
                if wait:
                    self._waiters -= 1
            if isinstance(record, _Wake):
                self._wakes_queued -= 1
                if not (wait and record.at >= waiting_since):
                    continue  # meant for a waiter that has gone (timed out)
                self._wake_one(record.error)
                raise PoolConnectError(
                    f"connecting to the database failed while this caller waited for a pooled "
                    f"connection: {record.error!r}"
                ) from record.error
            if record is not None:
                return record  # type: ignore[no-any-return]
            if use_overflow and self._overflow >= self._max_overflow:
                if wait or time.monotonic() >= deadline:
                    raise exc.TimeoutError(
                        f"QueuePool limit of size {self.size()} overflow {self.overflow()} reached, "
                        f"connection timed out, timeout {self._timeout:.2f}",
                        code="3o7r",
                    )
                continue
            if self._inc_overflow():
                try:
                    return self._create_connection()
                except BaseException as error:
                    self._dec_overflow()
                    if isinstance(error, Exception):
                        self._wake_one(error)
                    raise

    def _wake_one(self, error: BaseException) -> None:
        # One wake per waiter at most: extra ones would sit in the queue.
        if self._waiters > self._wakes_queued:
            try:
                self._pool.put(cast(Any, _Wake(error)), False)
                self._wakes_queued += 1
            except sqla_queue.Full:
                pass

    def dispose(self) -> None:
        # QueuePool.dispose closes everything in the queue: take wakes out first.
        kept: list[Any] = []
        while True:
            try:
                item = self._pool.get(False)
            except sqla_queue.Empty:
                break
            if not isinstance(item, _Wake):
                kept.append(item)
        self._wakes_queued = 0
        for item in kept:
            self._pool.put(item, False)
        super().dispose()
