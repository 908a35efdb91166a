"""``--check-engine module:attribute``: the team's own engine, through the same probes."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .backends import Holders
from .burst import engine_burst, smoke
from .model import EndpointKind, EngineCheck
from .statements import Statements
from .target import DoctorError, Target, describe_error

__all__ = ["check_engine", "load_engine"]

#: Shape of the burst: a request spike of parameterised, repeated statements.
TASKS = 50
TRANSACTIONS = 5


def load_engine(spec: str) -> Any:
    """Import ``module:attribute`` (dots allowed in both), from the current directory too.

    Raises:
        DoctorError: bad spec, import error, missing attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise DoctorError(
            f"--check-engine expects module:attribute (e.g. app.db:engine), not {spec!r}"
        )
    # What `python -m` does: the user runs the doctor from their project root.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise DoctorError(f"cannot import {module_name}: {describe_error(exc)}") from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DoctorError(f"{module_name} has no attribute {attribute!r}") from None
    return obj


async def resolve_engine(spec: str, obj: Any) -> AsyncEngine:
    """The engine itself, or what a factory (sync or async, no arguments) returns."""
    if not isinstance(obj, AsyncEngine) and callable(obj):
        try:
            obj = obj()
            if inspect.isawaitable(obj):
                obj = await obj
        except Exception as exc:
            raise DoctorError(f"calling {spec}() failed: {describe_error(exc)}") from exc
    if not isinstance(obj, AsyncEngine):
        raise DoctorError(
            f"{spec} is a {type(obj).__name__}, not an AsyncEngine or a function returning one"
        )
    return obj


async def check_engine(
    spec: str,
    engine: AsyncEngine,
    sql: Statements,
    target: Target,
    kind: EndpointKind,
    wait: float,
) -> EngineCheck:
    """One transaction, then a burst, then (behind a transaction pooler) a forced
    move between backends; the exact error of whatever failed."""
    description = (
        f"{engine.url.render_as_string(hide_password=True)} ({type(engine.pool).__name__})"
    )
    error = await smoke(engine, sql, target.timeout)
    if error is not None:
        return EngineCheck(spec, description, False, error, None)
    burst = await engine_burst(
        engine, sql, spec, tasks=TASKS, transactions=TRANSACTIONS, deadline=target.timeout * 4
    )
    if burst.passed and kind == "transaction_pooler":
        moved_error = await _engine_move(engine, sql, target, wait, burst.backends)
        if moved_error is not None:
            return EngineCheck(spec, description, False, moved_error, burst)
    return EngineCheck(spec, description, burst.passed, burst.top_error(), burst)


async def _engine_move(
    engine: AsyncEngine, sql: Statements, target: Target, wait: float, backends: set[int]
) -> str | None:
    """One engine connection runs a statement, then runs it again while holders keep
    the pooler's most recent backends busy, so the second transaction lands on
    another one. A burst meets that case only by luck (a lightly loaded pooler keeps
    handing a client the same backend); this meets it every time there is a second
    backend. Backends seen go into ``backends`` for the cleanup. Returns the exact
    error, or None.
    """
    holders = Holders(target, wait)
    try:
        async with engine.connect() as conn:

            async def transaction(n: int) -> None:
                async with conn.begin():
                    row = (await conn.execute(text(sql.one_named), {"n": n})).one()
                    backends.add(int(row.pid))

            try:
                # The connection may hold statements from the burst: this first
                # transaction can already meet the problem.
                await transaction(41)
                for _ in range(2):
                    if await holders.add() is None:
                        break
                await holders.run_while_held(transaction(42))
            except DoctorError:
                raise
            except Exception as exc:
                return describe_error(exc)
    finally:
        await holders.release()
    return None
