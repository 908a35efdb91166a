"""SQLAlchemy asyncio sessions and engines that are safe behind pgbouncer/Supavisor.

``from session_runtime import get_session, get_background_session, make_engine``
"""

from __future__ import annotations

from .engine import make_engine
from .errors import (
    NotConfiguredError,
    PoolConnectError,
    SessionClosedError,
    SessionUsedAcrossTasksError,
    StrictModeError,
)
from .session import (
    configure,
    dispose,
    get_background_engine,
    get_background_session,
    get_engine,
    get_session,
    session_dependency,
)

__all__ = [
    "NotConfiguredError",
    "PoolConnectError",
    "SessionClosedError",
    "SessionUsedAcrossTasksError",
    "StrictModeError",
    "configure",
    "dispose",
    "get_background_engine",
    "get_background_session",
    "get_engine",
    "get_session",
    "make_engine",
    "session_dependency",
]

__version__ = "0.1.0"
