"""The engine configuration the probes proved safe, as keyword arguments and as code."""

from __future__ import annotations

import ssl
from typing import Any, Literal

from ..engine import DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_RECYCLE
from .capacity import SQLALCHEMY_DEFAULT_POOL
from .model import Configuration, PreparedStatements, StartupParameters, Topology
from .target import Target

__all__ = ["recommend", "render_make_engine", "render_plain"]

_POOLER: dict[str, Literal["transaction", "session", "none"]] = {
    "transaction_pooler": "transaction",
    "session_pooler": "session",
    "direct": "none",
}


def _jsonable(connect_args: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in connect_args.items():
        if isinstance(value, ssl.SSLContext):
            # Built from the URL's sslrootcert/sslcert: code, not data.
            out[key] = "<ssl.SSLContext>"
            notes.append(
                "connect_args['ssl'] is an ssl.SSLContext built from the URL's sslrootcert/sslcert "
                "(make_engine builds it for you)"
            )
        else:
            out[key] = value
    return out


def recommend(
    target: Target, topo: Topology, prepared: PreparedStatements, startup: StartupParameters
) -> Configuration | None:
    """None when no configuration works there (e.g. asyncpg too old behind a transaction pooler)."""
    pooler = _POOLER[topo.kind]
    cache_off_ok = prepared.cache_off is not None and prepared.cache_off.passed
    # Named statements outlive the client on a session pooler that keeps state
    # between clients: the next client's "__asyncpg_stmt_1__" already exists.
    defaults_safe = (
        pooler != "transaction"
        and bool(prepared.defaults_ok)
        and topo.resets_between_clients is not False
    )
    if not defaults_safe and not cache_off_ok:
        return None
    psycopg = target.resolved.driver == "psycopg"
    make_kwargs: dict[str, Any] = {"pooler": pooler}
    notes: list[str] = []
    if psycopg:
        connect_args: dict[str, Any] = {"connect_timeout": int(DEFAULT_CONNECT_TIMEOUT)}
        if not defaults_safe:
            connect_args = {"prepare_threshold": None, **connect_args}
            if pooler != "transaction":
                make_kwargs["connect_args"] = {"prepare_threshold": None}
    else:
        connect_args = _jsonable(dict(target.resolved.connect_args), notes)
        if not defaults_safe:
            connect_args["statement_cache_size"] = 0
            if pooler != "transaction":
                # make_engine sets it itself only in transaction mode.
                make_kwargs["connect_args"] = {"statement_cache_size": 0}
        connect_args["timeout"] = DEFAULT_CONNECT_TIMEOUT
    if pooler == "transaction" and prepared.defaults_ok:
        notes.append(
            "asyncpg's defaults also work here (the pooler re-prepares named statements); "
            "statement_cache_size=0 does not depend on that pooler setting"
        )
    if pooler == "transaction":
        accepted = ", ".join(startup.accepted) or "none"
        notes.append(f"server_settings may only hold what this endpoint accepts: {accepted}")
    if topo.leaks is not False and pooler == "transaction":
        notes.append(
            "session state is shared between clients: use SET LOCAL inside a transaction, never "
            "SET; no session advisory locks, LISTEN/NOTIFY or temp tables across transactions"
        )
    if topo.leaks and pooler != "transaction":
        notes.append("the pooler keeps session state between clients: use SET LOCAL, never SET")
    pool: dict[str, int] = {}
    if pooler == "session":
        capacity = topo.capacity
        if capacity is not None and capacity < SQLALCHEMY_DEFAULT_POOL:
            # SQLAlchemy's 5 + 10 would queue at the pooler: fit the pool into what it gave.
            size = max(1, min(5, capacity))
            pool = {"pool_size": size, "max_overflow": max(0, capacity - size)}
        got = f"{capacity}" if capacity is not None else "?"
        if capacity is not None and capacity >= SQLALCHEMY_DEFAULT_POOL:
            got = f"at least {capacity}"
        notes.append(
            f"each pooled connection holds a server connection for its lifetime; the pooler gave "
            f"the doctor {got} at once: keep pool_size + max_overflow of all processes together "
            "within what it can give"
        )
    make_kwargs.update(pool)
    notes.append(
        "make_engine also replaces pooled connections the server or pooler closed and fails "
        "waiting callers fast when connects fail; a plain engine can add pool_pre_ping=True "
        "(one round trip per checkout) for the first"
    )
    return Configuration(
        pooler=pooler,
        make_engine_kwargs=make_kwargs,
        plain_url=target.masked,
        plain_kwargs={"connect_args": connect_args, **pool, "pool_recycle": DEFAULT_POOL_RECYCLE},
        notes=notes,
    )


def _literal(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _url_expr(target: Target, masked: str) -> str:
    return 'os.environ["DATABASE_URL"]' if target.from_env else _literal(masked)


def render_make_engine(target: Target, config: Configuration) -> str:
    url = _url_expr(target, target.original.render_as_string(hide_password=True))
    args = "".join(f", {k}={_literal(v)}" for k, v in config.make_engine_kwargs.items())
    return f"engine = make_engine({url}{args})"


def render_plain(target: Target, config: Configuration) -> str:
    lines = ["engine = create_async_engine(", f"    {_literal(config.plain_url)},"]
    lines += [f"    {k}={_literal(v)}," for k, v in config.plain_kwargs.items()]
    return "\n".join([*lines, ")"])
