"""A hash computed once per object, for the frozen values every rule keys its
caches on.

A :class:`~session_lint.project.config.Config` holds the whole project index, and
``functools.lru_cache`` hashes its argument on every call: the generated dataclass
``__hash__`` re-hashes every field each time, which on a large project (tens of
thousands of effect summaries) cost more than parsing the files (docs/architecture.md,
"Large trees"). The values are frozen, so the first hash is the hash for good.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

_KEY = "_hash_once"


def hash_once(value: Any) -> int:
    """``hash`` of the compared fields, as the generated ``__hash__`` would give,
    kept in the instance dict (which a frozen dataclass lets us write directly)."""
    known: int | None = value.__dict__.get(_KEY)
    if known is None:
        known = hash(tuple(getattr(value, f.name) for f in fields(value) if f.compare))
        value.__dict__[_KEY] = known
    return known


def state_without_hash(value: Any) -> dict[str, Any]:
    """The instance dict to pickle, without the kept hash: a process started by
    ``spawn`` has another string-hash seed, so the hash must be computed there anew."""
    state = dict(value.__dict__)
    state.pop(_KEY, None)
    return state
