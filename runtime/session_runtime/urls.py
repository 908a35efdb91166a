"""Database URL normalisation and pooler detection."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import URL, make_url

__all__ = ["PoolerMode", "ResolvedURL", "detect_pooler", "resolve_url"]

PoolerMode = Literal["auto", "transaction", "session", "none"]
_MODES = ("transaction", "session", "none")

# Supabase's Supavisor: port 6543 is transaction mode, 5432 session mode.
_SUPABASE_POOLER_SUFFIX = ".pooler.supabase.com"
_SUPABASE_TRANSACTION_PORT = 6543

_TRUE = {"1", "true", "yes", "on"}

# asyncpg connect() arguments that must be numbers: from a URL query they
# arrive as strings, and asyncpg then fails every query with
# "TypeError: '<' not supported between instances of 'str' and 'int'".
_ASYNCPG_INT_ARGS = (
    "statement_cache_size",
    "max_cached_statement_lifetime",
    "max_cacheable_statement_size",
)
_ASYNCPG_FLOAT_ARGS = ("timeout", "command_timeout")
_LIBPQ_SSL_ARGS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword")


@dataclass
class ResolvedURL:
    """A URL ready for ``create_async_engine`` plus what was moved out of its query."""

    url: URL
    driver: Literal["asyncpg", "psycopg"]
    pgbouncer_flag: bool = False
    connect_args: dict[str, Any] = field(default_factory=dict)


def _first(value: str | tuple[str, ...]) -> str:
    return value[-1] if isinstance(value, tuple) else value


def _ssl_arg(params: dict[str, str]) -> str | ssl.SSLContext:
    """libpq ``sslmode`` & co. → asyncpg's ``ssl`` argument.

    asyncpg accepts the libpq mode names as ``ssl=<mode>``; certificate files
    need an SSLContext.
    """
    mode = params.get("sslmode", "prefer")
    files = {k: v for k, v in params.items() if k != "sslmode"}
    if not files:
        return mode
    if mode in ("disable", "allow", "prefer", "require") and "sslrootcert" in files:
        # libpq: a root cert with sslmode=require behaves like verify-ca.
        mode = "verify-ca"
    context = ssl.create_default_context(cafile=files.get("sslrootcert"))
    if mode != "verify-full":
        context.check_hostname = False
    if mode not in ("verify-ca", "verify-full"):
        context.verify_mode = ssl.CERT_NONE
    if "sslcert" in files:
        context.load_cert_chain(files["sslcert"], files.get("sslkey"), files.get("sslpassword"))
    return context


def resolve_url(url: str | URL) -> ResolvedURL:
    """Normalise a PostgreSQL URL for SQLAlchemy asyncio.

    * ``postgres://`` and ``postgresql://`` become ``postgresql+asyncpg://``;
      ``postgresql+psycopg://`` stays (SQLAlchemy picks psycopg's async mode).
    * ``pgbouncer=true`` is removed (it is a hint for us, and asyncpg would
      reject it as an unknown keyword); ``pgbouncer_flag`` records it.
    * asyncpg only: libpq's ``sslmode``/``sslrootcert``/``sslcert``/``sslkey``
      become asyncpg's ``ssl`` argument (asyncpg rejects ``sslmode`` as a
      keyword); numeric asyncpg arguments such as ``statement_cache_size``
      move to ``connect_args`` as numbers; ``application_name`` moves to
      ``server_settings`` (asyncpg has no such keyword).

    Raises:
        ValueError: the URL is not PostgreSQL or names a driver without asyncio support.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername!r}")
    if driver in ("", "asyncpg"):
        kind: Literal["asyncpg", "psycopg"] = "asyncpg"
        drivername = "postgresql+asyncpg"
    elif driver in ("psycopg", "psycopg_async"):
        kind = "psycopg"
        drivername = f"postgresql+{driver}"
    else:
        raise ValueError(
            f"driver {driver!r} has no asyncio support: use postgresql+asyncpg:// (or postgresql+psycopg://)"
        )
    query = {k: _first(v) for k, v in parsed.query.items()}
    pgbouncer_flag = query.pop("pgbouncer", "").lower() in _TRUE
    connect_args: dict[str, Any] = {}
    if kind == "asyncpg":
        ssl_params = {k: query.pop(k) for k in _LIBPQ_SSL_ARGS if k in query}
        if "ssl" in query:
            raw = query.pop("ssl")
            connect_args["ssl"] = {
                "true": "require",
                "1": "require",
                "false": "disable",
                "0": "disable",
            }.get(raw.lower(), raw)
        if ssl_params:
            connect_args["ssl"] = _ssl_arg(ssl_params)
        for key in _ASYNCPG_INT_ARGS:
            if key in query:
                connect_args[key] = int(query.pop(key))
        for key in _ASYNCPG_FLOAT_ARGS:
            if key in query:
                connect_args[key] = float(query.pop(key))
        if "application_name" in query:
            connect_args["server_settings"] = {"application_name": query.pop("application_name")}
    resolved = parsed.set(drivername=drivername).set(query=query)
    return ResolvedURL(resolved, kind, pgbouncer_flag, connect_args)


def detect_pooler(
    resolved: ResolvedURL, pooler: PoolerMode = "auto"
) -> Literal["transaction", "session", "none"]:
    """Which pooler sits between the app and PostgreSQL.

    An explicit ``pooler`` wins. ``"auto"``: transaction mode when the URL had
    ``pgbouncer=true``, or the host is a Supabase pooler
    (``*.pooler.supabase.com``) on port 6543; otherwise ``$DB_POOLER``
    (``transaction``/``session``/``none``); otherwise ``none``.
    """
    if pooler != "auto":
        if pooler not in _MODES:
            raise ValueError(
                f"pooler must be 'auto', 'transaction', 'session' or 'none', not {pooler!r}"
            )
        return pooler
    host = (resolved.url.host or "").lower()
    if resolved.pgbouncer_flag:
        return "transaction"
    if host.endswith(_SUPABASE_POOLER_SUFFIX) and resolved.url.port == _SUPABASE_TRANSACTION_PORT:
        return "transaction"
    env = os.environ.get("DB_POOLER", "").strip().lower()
    if env in _MODES:
        return env  # type: ignore[return-value]
    if env:
        raise ValueError(f"$DB_POOLER must be 'transaction', 'session' or 'none', not {env!r}")
    return "none"
