"""Probe 3: which ``server_settings`` (startup parameters) the endpoint accepts.

Each parameter is tried on its own connection, with the value the server
already uses, so an accepted parameter changes nothing. ``application_name``
gets a value of its own, which also shows whether an accepted parameter is
applied or silently dropped (pgbouncer's ``ignore_startup_parameters``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .model import StartupParameters
from .target import DoctorError, Target, describe_error

__all__ = ["CANDIDATES", "probe_startup"]

#: What applications commonly put in ``server_settings``.
CANDIDATES = (
    "application_name",
    "TimeZone",
    "DateStyle",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "jit",
    "work_mem",
    "options",
)
_APPLICATION_NAME = "session-runtime doctor"


async def _try(target: Target, name: str, value: str, check: str, expected: str) -> str | None:
    """None if accepted and applied, else why not."""
    settings = dict(target.connect_kwargs.get("server_settings") or {})
    settings[name] = value
    try:
        conn = await target.connect(server_settings=settings)
    except DoctorError as exc:
        return describe_error(exc.__cause__ or exc, target.timeout)
    try:
        got = await conn.fetchval("SELECT current_setting($1)", check)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), target.timeout)
    return None if got == expected else f"accepted but not applied ({check} is {got!r})"


async def probe_startup(target: Target) -> StartupParameters:
    conn = await target.connect()
    try:
        current: dict[str, Any] = {
            name: await conn.fetchval("SELECT current_setting($1)", name)
            for name in CANDIDATES
            if name not in ("application_name", "options")
        }
    finally:
        await conn.close()
    tries: dict[str, tuple[str, str, str]] = {
        name: (str(value), name, str(value)) for name, value in current.items()
    }
    tries["application_name"] = (_APPLICATION_NAME, "application_name", _APPLICATION_NAME)
    # libpq-style "options" (-c name=value) is how some platforms' docs pass settings.
    timeout_now = str(current["statement_timeout"])
    tries["options"] = (f"-c statement_timeout={timeout_now}", "statement_timeout", timeout_now)
    outcomes = await asyncio.gather(*(_try(target, name, *tries[name]) for name in CANDIDATES))
    result = StartupParameters()
    for name, outcome in zip(CANDIDATES, outcomes, strict=True):
        if outcome is None:
            result.accepted.append(name)
        else:
            result.refused[name] = outcome
    return result
