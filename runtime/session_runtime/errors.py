"""Exceptions raised by session_runtime."""

from __future__ import annotations

__all__ = [
    "NotConfiguredError",
    "PoolConnectError",
    "SessionClosedError",
    "SessionUsedAcrossTasksError",
    "StrictModeError",
]


class NotConfiguredError(RuntimeError):
    """No database URL: neither ``configure()``/``make_engine()`` got one nor is ``$DATABASE_URL`` set."""


class PoolConnectError(ConnectionError):
    """Raised to callers waiting for a pooled connection when a connect attempt failed.

    ``__cause__`` is the connect error. An ``OSError``, like the
    ``ConnectionRefusedError``/``TimeoutError`` a direct connect raises.
    """


class StrictModeError(RuntimeError):
    """A session was misused; raised only with ``configure(..., strict=True)``."""


class SessionUsedAcrossTasksError(StrictModeError):
    """A session was used from a task other than the one that opened it (lint rules SL401/SL402)."""


class SessionClosedError(StrictModeError):
    """A session was used after it was closed (e.g. after its ``async with get_session()`` block)."""
