"""Batch service: create a batch, read its status, process it with any number of workers.

::

    from session_runtime.batch import create_batch, get_batch_status, process_batch_with_own_session

Everything runs through the runtime's engines, so it works behind a
transaction pooler (pgbouncer, Supavisor): no session state, no prepared
statements, no LISTEN/NOTIFY, no session-level advisory locks.
"""

from __future__ import annotations

from .errors import BatchNotFoundError, PermanentItemError
from .models import BatchBase, BatchItem, BatchJob, BatchState, ItemState, metadata
from .schema import create_all, drop_all
from .service import (
    BatchStatus,
    ItemSummary,
    create_batch,
    get_batch_status,
    unfinished_batch_ids,
)
from .validation import MAX_ITEMS, MAX_PAYLOAD_BYTES
from .worker import Handler, WorkerReport, process_batch_with_own_session

__all__ = [
    "MAX_ITEMS",
    "MAX_PAYLOAD_BYTES",
    "BatchBase",
    "BatchItem",
    "BatchJob",
    "BatchNotFoundError",
    "BatchState",
    "BatchStatus",
    "Handler",
    "ItemState",
    "ItemSummary",
    "PermanentItemError",
    "WorkerReport",
    "create_all",
    "create_batch",
    "drop_all",
    "get_batch_status",
    "metadata",
    "process_batch_with_own_session",
    "unfinished_batch_ids",
]
