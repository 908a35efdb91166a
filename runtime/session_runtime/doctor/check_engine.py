"""``--check-engine module:attribute``: the team's own engine, through the same probes."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .burst import engine_burst, smoke
from .model import EngineCheck
from .statements import Statements
from .target import DoctorError, describe_error

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
    spec: str, engine: AsyncEngine, sql: Statements, timeout: float
) -> EngineCheck:
    """One transaction, then a burst; the exact error of whatever failed."""
    description = (
        f"{engine.url.render_as_string(hide_password=True)} ({type(engine.pool).__name__})"
    )
    error = await smoke(engine, sql, timeout)
    if error is not None:
        return EngineCheck(spec, description, False, error, None)
    burst = await engine_burst(
        engine, sql, spec, tasks=TASKS, transactions=TRANSACTIONS, deadline=timeout * 4
    )
    return EngineCheck(spec, description, burst.passed, burst.top_error(), burst)
