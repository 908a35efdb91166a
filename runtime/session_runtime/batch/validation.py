"""Argument checks shared by the batch functions: each raises before anything is written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "MAX_ITEMS",
    "MAX_OPTIONS_BYTES",
    "MAX_PAYLOAD_BYTES",
    "canonical_json",
    "check_identifier",
    "check_options",
    "check_session",
    "parse_batch_id",
]

#: Most items one batch may hold: one ``create_batch`` writes them in one
#: transaction, and a status page lists them.
MAX_ITEMS = 10_000
#: Largest item payload, as compact JSON (UTF-8 bytes).
MAX_PAYLOAD_BYTES = 64 * 1024
#: Largest ``options`` mapping, as compact JSON (UTF-8 bytes).
MAX_OPTIONS_BYTES = 64 * 1024


def check_session(session: object) -> AsyncSession:
    if not isinstance(session, AsyncSession):
        raise TypeError(
            f"session must be a sqlalchemy AsyncSession (e.g. from get_session()), got {type(session).__name__}"
        )
    return session


def check_identifier(name: str, value: object, *, max_length: int) -> str:
    """A non-blank string of at most ``max_length`` characters (tenant ids, user names…)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{name} is {len(value)} characters long; the limit is {max_length}")
    return value


def parse_batch_id(value: object) -> uuid.UUID:
    """A ``UUID``, or a string holding one."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValueError(f"batch_id must be a UUID, got {value!r}") from None
    raise TypeError(f"batch_id must be a UUID or a UUID string, got {type(value).__name__}")


def canonical_json(name: str, value: Any, *, max_bytes: int) -> str:
    """Compact JSON with sorted keys: equal values give equal text (duplicate detection).

    NaN and infinities are refused because PostgreSQL's ``jsonb`` refuses them.
    """
    try:
        encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not JSON-serialisable: {exc}") from None
    size = len(encoded.encode())
    if size > max_bytes:
        raise ValueError(f"{name} is {size} bytes as JSON; the limit is {max_bytes}")
    return encoded


def check_options(options: object) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping or None, got {type(options).__name__}")
    bad = [key for key in options if not isinstance(key, str)]
    if bad:
        raise ValueError(f"options keys must be strings, got {bad[0]!r}")
    canonical_json("options", dict(options), max_bytes=MAX_OPTIONS_BYTES)
    return dict(options)
