"""Process-wide engines and the session factories application code uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import QueuePool

from .engine import make_engine, sibling_engine
from .strict import StrictAsyncSession

__all__ = [
    "SessionContext",
    "configure",
    "dispose",
    "get_background_engine",
    "get_background_session",
    "get_engine",
    "get_session",
    "session_dependency",
]

#: Background pool: small, so batch work cannot take the connections (and the
#: pooler's server slots) request handlers need.
BACKGROUND_POOL_SIZE = 2
BACKGROUND_MAX_OVERFLOW = 3


@dataclass(frozen=True)
class _Runtime:
    engine: AsyncEngine
    background_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    background_sessions: async_sessionmaker[AsyncSession]
    strict: bool


_runtime: _Runtime | None = None


def configure(
    url_or_engine: str | URL | AsyncEngine | None = None,
    *,
    strict: bool = False,
    background_engine: AsyncEngine | None = None,
    background_pool_size: int = BACKGROUND_POOL_SIZE,
    background_max_overflow: int = BACKGROUND_MAX_OVERFLOW,
    **engine_kwargs: Any,
) -> None:
    """Set up the engines behind :func:`get_session` and :func:`get_background_session`.

    Call once at start-up (e.g. in a FastAPI lifespan, paired with
    ``await dispose()`` at shutdown). Without a call, the first session
    configures from ``$DATABASE_URL``.

    Args:
        url_or_engine: a URL for :func:`make_engine` (``$DATABASE_URL`` when
            None), or a ready engine.
        strict: sessions raise :class:`~session_runtime.errors.StrictModeError`
            when used from another task than the one that opened them, or
            after close. Meant for development and tests.
        background_engine: the engine for background sessions; by default a
            second engine like the main one with its own, smaller pool
            (``background_pool_size`` + ``background_max_overflow``).
        **engine_kwargs: passed to :func:`make_engine` (with a URL).

    Reconfiguring replaces the engines without closing the old ones' pools:
    ``await dispose()`` first.
    """
    global _runtime
    if isinstance(url_or_engine, AsyncEngine):
        if engine_kwargs:
            raise TypeError(
                f"engine options {sorted(engine_kwargs)} given together with a ready engine"
            )
        engine = url_or_engine
    else:
        engine = make_engine(url_or_engine, **engine_kwargs)
    if background_engine is None:
        sizes: dict[str, int] = {}
        if isinstance(engine.sync_engine.pool, QueuePool):  # NullPool has no size
            sizes = {"pool_size": background_pool_size, "max_overflow": background_max_overflow}
        background_engine = sibling_engine(engine, **sizes)
    session_class = StrictAsyncSession if strict else AsyncSession
    # expire_on_commit=False: reading an attribute after commit() would
    # otherwise be implicit IO, i.e. MissingGreenlet under asyncio.
    _runtime = _Runtime(
        engine,
        background_engine,
        async_sessionmaker(engine, class_=session_class, expire_on_commit=False),
        async_sessionmaker(background_engine, class_=session_class, expire_on_commit=False),
        strict,
    )


def _current() -> _Runtime:
    if _runtime is None:
        configure()
    assert _runtime is not None
    return _runtime


def get_engine() -> AsyncEngine:
    """The engine request sessions use (configured from ``$DATABASE_URL`` on first use)."""
    return _current().engine


def get_background_engine() -> AsyncEngine:
    """The engine background sessions use: a separate, smaller pool."""
    return _current().background_engine


class SessionContext:
    """``async with`` context for one session; returned by :func:`get_session`."""

    __slots__ = ("_factory", "_session")

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        self._session = self._factory()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            # close() rolls back whatever the block left open and returns
            # the connection to the pool.
            try:
                await session.close()
            except DBAPIError as error:
                # A connection that died (pooler or server restart) is already
                # invalidated and the server has dropped its transaction: nothing
                # is lost by not rolling back, and raising here would replace the
                # error the block itself saw (or raise after it was handled).
                if not error.connection_invalidated:
                    raise


def get_session() -> SessionContext:
    """``async with get_session() as s:`` — a request-scoped ``AsyncSession``.

    ``expire_on_commit=False``; no transaction is opened for you (use
    ``async with s.begin():``); the session is closed when the block ends,
    rolling back anything not committed.
    """
    return SessionContext(_current().sessions)


def get_background_session() -> SessionContext:
    """Like :func:`get_session`, from the background engine's own, smaller pool.

    For work that outlives a request (``BackgroundTasks``, ``create_task``,
    batch jobs): it opens its own session instead of borrowing the
    request's, and cannot starve request handlers of connections.
    """
    return SessionContext(_current().background_sessions)


def session_dependency(*, background: bool = False) -> Callable[[], AsyncIterator[AsyncSession]]:
    """A FastAPI dependency yielding a session: ``Depends(session_dependency())``.

    The session is closed after the endpoint returns. No FastAPI import needed.
    """
    opener = get_background_session if background else get_session

    async def session() -> AsyncIterator[AsyncSession]:
        async with opener() as s:
            yield s

    return session


async def dispose() -> None:
    """Close both engines' pooled connections and forget the configuration.

    The next session configures again (from ``$DATABASE_URL`` unless
    :func:`configure` is called first).
    """
    global _runtime
    runtime, _runtime = _runtime, None
    if runtime is not None:
        await runtime.background_engine.dispose()
        await runtime.engine.dispose()
