"""Connection-pool behaviour make_engine() installs: liveness and fail-fast waiting."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import queue as sqla_queue

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
        raise exc.DisconnectionError("connection was closed by the server or pooler while idle in the pool")


class _Wake:
    """Queue sentinel: a connect attempt failed, a waiter may try its own."""


_WAKE: Any = _Wake()


class FailFastQueuePool(AsyncAdaptedQueuePool):
    """``AsyncAdaptedQueuePool`` whose waiters learn about failed connects.

    SQLAlchemy's ``QueuePool`` lets at most ``pool_size + max_overflow``
    connections exist; further callers wait on the queue for one to be
    returned. When a connect fails, its slot is freed but nobody is woken, so
    with the server down every waiter sleeps the whole ``pool_timeout``
    (measured: a 50-task burst stalled on "QueuePool limit of size 5 overflow
    10 reached, connection timed out, timeout 30.00"). Here a failed connect
    wakes one waiter, which retries with the freed slot: it connects, or fails
    within the connect timeout and wakes the next one.

    Relies on ``QueuePool`` internals (``_pool``, ``_overflow``,
    ``_inc_overflow``/``_dec_overflow``), unchanged from SQLAlchemy 1.4 to 2.1.
    """

    _waiters = 0

    def _do_get(self) -> ConnectionPoolEntry:
        deadline = time.monotonic() + self._timeout
        while True:
            use_overflow = self._max_overflow > -1
            wait = use_overflow and self._overflow >= self._max_overflow
            record: Any = None
            if wait:
                self._waiters += 1
            try:
                record = self._pool.get(wait, max(deadline - time.monotonic(), 0.0))
            except sqla_queue.Empty:
                pass
            finally:
                if wait:
                    self._waiters -= 1
            if record is _WAKE:
                continue
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
                except BaseException:
                    self._dec_overflow()
                    self._wake_one()
                    raise

    def _wake_one(self) -> None:
        if self._waiters > 0:
            try:
                self._pool.put(_WAKE, False)
            except sqla_queue.Full:
                pass
