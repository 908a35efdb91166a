"""Exceptions of the batch service."""

from __future__ import annotations

__all__ = ["BatchNotFoundError"]


class BatchNotFoundError(LookupError):
    """No batch with this id, or it belongs to another tenant (never told apart)."""
