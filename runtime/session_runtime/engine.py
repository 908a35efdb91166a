"""make_engine(): an AsyncEngine that is safe and fast behind a transaction pooler."""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .errors import NotConfiguredError
from .pool import FailFastQueuePool, check_alive_on_checkout
from .urls import PoolerMode, detect_pooler, resolve_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_POOL_RECYCLE",
    "PGBOUNCER_STARTUP_PARAMETERS",
    "make_engine",
]

#: Seconds a connect may take before it fails (asyncpg's default is 60).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds after which a pooled connection is replaced. Catches connections
#: that died without a FIN (NAT or load-balancer idle timeouts, e.g. AWS NLB's
#: 350 s), which the free checkout check cannot see.
DEFAULT_POOL_RECYCLE = 300

#: Startup parameters pgbouncer tracks per client and therefore accepts
#: (compared case-insensitively). Others (``search_path``, ``jit``,
#: ``options``…) fail every connect with "unsupported startup parameter".
PGBOUNCER_STARTUP_PARAMETERS = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}
)

# Names that are asyncpg.connect() (or SQLAlchemy dialect) keywords, not
# PostgreSQL settings: in server_settings they become startup parameters and
# every connect fails (direct: "unrecognized configuration parameter").
_DRIVER_ARGS = frozenset(inspect.signature(asyncpg.connect).parameters) | {
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
}


@dataclass(frozen=True)
class _Recipe:
    """How an engine was made, so a sibling (the background engine) can be made alike."""

    url: URL
    pooler: PoolerMode
    kwargs: Mapping[str, Any]
    extra_startup_parameters: tuple[str, ...]


_RECIPES: weakref.WeakKeyDictionary[Engine, _Recipe] = weakref.WeakKeyDictionary()


def _refuse(key: str, why: str) -> ValueError:
    return ValueError(f"{key}: {why}")


def _check_server_settings(
    settings: Mapping[str, Any], *, transaction: bool, allowed: frozenset[str]
) -> None:
    for key in settings:
        if key in _DRIVER_ARGS:
            raise _refuse(
                f"server_settings[{key!r}]",
                f"{key!r} is an asyncpg connect argument, not a PostgreSQL server setting; every connect "
                f"would fail. Pass it at the top level of connect_args: connect_args={{{key!r}: ...}}",
            )
        if transaction and key.lower() not in allowed:
            raise _refuse(
                f"server_settings[{key!r}]",
                f"pgbouncer refuses the startup parameter {key!r} in transaction mode "
                f'("unsupported startup parameter"); accepted: {", ".join(sorted(allowed))}. '
                "Set it per role (ALTER ROLE ... SET) or per transaction (SET LOCAL).",
            )


def _check_name_func(func: Any) -> None:
    if func is None:
        return
    names = {func(), func()}
    if any(names):
        raise _refuse(
            "prepared_statement_name_func",
            "named prepared statements leak on a transaction pooler's server connections without bound "
            "(the uuid recipe: 216 -> 892 per server connection over 4 runs) and are ~30% slower. "
            "With asyncpg>=0.32, statement_cache_size=0 alone is pooler-safe: remove the name func.",
        )


def _transaction_mode_asyncpg(connect_args: dict[str, Any], allowed: frozenset[str]) -> None:
    cache = connect_args.setdefault("statement_cache_size", 0)
    if cache != 0:
        raise _refuse(
            "statement_cache_size",
            f"must be 0 behind a transaction pooler, got {cache!r}: cached named statements live on one "
            "server connection and the next transaction may run on another "
            '(prepared statement "__asyncpg_stmt_1__" does not exist).',
        )
    _check_name_func(connect_args.get("prepared_statement_name_func"))
    _check_server_settings(
        connect_args.get("server_settings") or {}, transaction=True, allowed=allowed
    )


def _transaction_mode_psycopg(connect_args: dict[str, Any]) -> None:
    threshold = connect_args.setdefault("prepare_threshold", None)
    if threshold is not None:
        raise _refuse(
            "prepare_threshold",
            f"must be None behind a transaction pooler, got {threshold!r}: psycopg would prepare named "
            "statements on one server connection and reuse them on another.",
        )
    if "options" in connect_args:
        raise _refuse(
            "options", "pgbouncer refuses the 'options' startup parameter in transaction mode."
        )


def make_engine(
    url: str | URL | None = None,
    *,
    pooler: PoolerMode = "auto",
    extra_startup_parameters: Iterable[str] = (),
    **kwargs: Any,
) -> AsyncEngine:
    """Create an ``AsyncEngine`` that is correct behind pgbouncer/Supavisor.

    Args:
        url: defaults to ``$DATABASE_URL``. ``postgres://`` and
            ``postgresql://`` become ``postgresql+asyncpg://``; libpq
            ``sslmode`` (& co.) becomes asyncpg's ``ssl``; ``pgbouncer=true``
            is read and removed. See :func:`session_runtime.urls.resolve_url`.
        pooler: ``"auto"`` (default): transaction mode for a Supabase pooler
            host on port 6543, a URL with ``pgbouncer=true``, or
            ``$DB_POOLER=transaction``. Or ``"transaction"``, ``"session"``,
            ``"none"``.
        extra_startup_parameters: more ``server_settings`` keys your pooler
            accepts (pgbouncer >= 1.20 ``track_extra_parameters``).
        **kwargs: passed to ``create_async_engine``; caller values win, except
            those that break pooler safety, which raise ``ValueError``.

    In transaction mode, with asyncpg:

    * ``connect_args["statement_cache_size"] = 0`` and nothing else about
      prepared statements: asyncpg >= 0.32 then uses unnamed statements, which
      never outlive a transaction. The SQLAlchemy docs' recipe (uuid
      ``prepared_statement_name_func`` + ``prepared_statement_cache_size=0``)
      leaks named statements on the server without bound and is slower.
    * ``server_settings`` may only hold startup parameters pgbouncer accepts
      (:data:`PGBOUNCER_STARTUP_PARAMETERS`).
    * ``isolation_level="AUTOCOMMIT"`` is allowed: measured through
      pgbouncer 1.18 (``default_pool_size=3``, 100 tasks, 3,000 statements of
      three shapes): 0 errors, 0 wrong results, ~1.5x the throughput of
      explicit transactions. asyncpg sends Parse/Describe with Flush, not
      Sync, and Bind/Execute/Sync after it, so the whole statement is one
      protocol cycle and pgbouncer cannot switch server connections inside
      it (tests/runtime/test_runtime_pooler.py::test_autocommit_through_pgbouncer
      re-proves it).

    With psycopg (``postgresql+psycopg://``): ``prepare_threshold=None``.

    In every mode:

    * ``connect_args["timeout"] = 5`` (asyncpg's default is 60 s): a connect
      to a dead host fails fast instead of holding a pool slot.
    * Liveness without a round trip: a pool ``checkout`` listener discards a
      connection whose socket the server or pooler already closed (asyncpg
      notices the EOF while the connection idles), SQLAlchemy's own
      disconnect detection invalidates the pool when a statement hits a dead
      connection, and ``pool_recycle=300`` retires connections that died
      silently. Chosen over ``pool_pre_ping=True`` because the ping is a
      round trip per checkout, three through a transaction pooler (BEGIN,
      ping, ROLLBACK): in bench/runtime_bench.py it cost ~28 % of
      throughput (341 vs 242 tps through pgbouncer; the docs recipe: 257),
      while the restart tests pass without it (10 busy tasks: only the
      transactions in flight fail, clean again ~30-65 ms after the restart;
      idle pool: 0 failures). Pass ``pool_pre_ping=True`` to add it.
    * The pool wakes a waiting caller when a connect fails
      (:class:`~session_runtime.pool.FailFastQueuePool`), so an outage
      returns errors within the connect timeout instead of stalling every
      waiter for ``pool_timeout`` (30 s).
    * A ``server_settings`` key that is an asyncpg connect argument (e.g.
      ``{"statement_cache_size": "0"}``) raises ``ValueError`` before any
      connection attempt.

    Raises:
        ValueError: a keyword argument would break pooler safety; the message names it.
        NotConfiguredError: no URL and no ``$DATABASE_URL``.
    """
    if url is None:
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise NotConfiguredError(
                "no database URL: pass one to make_engine() or set $DATABASE_URL"
            )
    resolved = resolve_url(url)
    mode = detect_pooler(resolved, pooler)
    transaction = mode == "transaction"
    allowed = PGBOUNCER_STARTUP_PARAMETERS | {p.lower() for p in extra_startup_parameters}

    connect_args = {**resolved.connect_args, **dict(kwargs.pop("connect_args", None) or {})}
    if resolved.driver == "asyncpg":
        if "server_settings" in resolved.connect_args and "server_settings" in connect_args:
            connect_args["server_settings"] = {
                **resolved.connect_args["server_settings"],
                **connect_args["server_settings"],
            }
        _check_server_settings(
            connect_args.get("server_settings") or {}, transaction=False, allowed=allowed
        )
        if transaction:
            _transaction_mode_asyncpg(connect_args, allowed)
        connect_args.setdefault("timeout", DEFAULT_CONNECT_TIMEOUT)
    else:
        if transaction:
            _transaction_mode_psycopg(connect_args)
        connect_args.setdefault("connect_timeout", int(DEFAULT_CONNECT_TIMEOUT))

    if "pool" not in kwargs and "poolclass" not in kwargs:
        kwargs["poolclass"] = FailFastQueuePool
    if "pool" not in kwargs:
        kwargs.setdefault("pool_recycle", DEFAULT_POOL_RECYCLE)

    engine = create_async_engine(resolved.url, connect_args=connect_args, **kwargs)
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "checkout", check_alive_on_checkout)
    _RECIPES[sync_engine] = _Recipe(
        resolved.url,
        pooler if pooler != "auto" else mode,
        {**kwargs, "connect_args": connect_args},
        tuple(extra_startup_parameters),
    )
    return engine


def sibling_engine(engine: AsyncEngine, **overrides: Any) -> AsyncEngine:
    """A new engine (own pool) configured like ``engine``, with ``overrides`` applied.

    Engines not made by :func:`make_engine` get ``make_engine(engine.url, **overrides)``.
    """
    recipe = _RECIPES.get(engine.sync_engine)
    if recipe is None:
        return make_engine(engine.url, **overrides)
    kwargs = {**recipe.kwargs, **overrides}
    return make_engine(
        recipe.url,
        pooler=recipe.pooler,
        extra_startup_parameters=recipe.extra_startup_parameters,
        **kwargs,
    )
