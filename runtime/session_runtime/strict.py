"""Strict mode: an AsyncSession that stays in the task that opened it.

The runtime twin of lint rules SL401 (session escapes to a task) and SL402
(session shared by ``asyncio.gather``). SQLAlchemy only notices concurrent
use when two operations overlap ("This session is provisioning a new
connection; concurrent operations are not permitted"), and never notices a
session handed to a task that runs after the request closed it. Strict mode
turns both into an immediate, specific error.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .errors import SessionClosedError, SessionUsedAcrossTasksError

__all__ = ["StrictAsyncSession"]

# Every public operation that touches the session's state or connection.
_GUARDED = (
    "add", "add_all", "begin", "begin_nested", "commit", "connection", "delete", "execute",
    "expire", "expire_all", "expunge", "expunge_all", "flush", "get", "get_one", "invalidate",
    "merge", "refresh", "rollback", "run_sync", "scalar", "scalars", "stream", "stream_scalars",
)  # fmt: skip


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return "no task" if task is None else f"task {task.get_name()!r}"


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop (a worker thread)
        return None


class StrictAsyncSession(AsyncSession):
    """``AsyncSession`` that raises on use from another task or after close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._strict_owner = _current_task()
        self._strict_closed = False

    def _strict_check(self, operation: str) -> None:
        if self._strict_closed:
            raise SessionClosedError(
                f"session.{operation}() on a closed session (opened in {_task_name(self._strict_owner)}). "
                "It was closed when its `async with get_session()` block ended; work that outlives the "
                "block (BackgroundTasks, create_task) must open its own: "
                "`async with get_background_session() as s:` (lint rule SL401)."
            )
        current = _current_task()
        if current is not self._strict_owner:
            raise SessionUsedAcrossTasksError(
                f"session.{operation}() from {_task_name(current)}, but the session was opened in "
                f"{_task_name(self._strict_owner)}. An AsyncSession is not safe to share between tasks "
                "(asyncio.gather, create_task, TaskGroup): give each task its own "
                "`async with get_session() as s:` (lint rules SL401/SL402)."
            )

    async def close(self) -> None:
        if not self._strict_closed:
            self._strict_check("close")
        await super().close()
        self._strict_closed = True


def _guard(name: str) -> Callable[..., Any]:
    original = getattr(AsyncSession, name)
    if inspect.iscoroutinefunction(original):

        async def guarded_async(self: StrictAsyncSession, *args: Any, **kwargs: Any) -> Any:
            # Checked inside the coroutine, so it sees the task that runs it
            # (gather wraps each coroutine in a task of its own).
            self._strict_check(name)
            return await original(self, *args, **kwargs)

        return functools.wraps(original)(guarded_async)

    def guarded(self: StrictAsyncSession, *args: Any, **kwargs: Any) -> Any:
        self._strict_check(name)
        return original(self, *args, **kwargs)

    return functools.wraps(original)(guarded)


for _name in _GUARDED:
    if hasattr(AsyncSession, _name):
        setattr(StrictAsyncSession, _name, _guard(_name))
