"""Exceptions of the batch service."""

from __future__ import annotations

__all__ = ["BatchNotFoundError", "PermanentItemError"]


class BatchNotFoundError(LookupError):
    """No batch with this id, or it belongs to another tenant (never told apart)."""


class PermanentItemError(Exception):
    """Raise (or subclass) in a handler for an error no retry can fix: the item fails at once."""
