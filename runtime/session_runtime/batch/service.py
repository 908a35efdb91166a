"""Creating batches and reading their status, inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import BatchNotFoundError
from .models import FINAL_BATCH_STATUSES, BatchItem, BatchJob, BatchState, ItemState
from .validation import (
    MAX_ITEMS,
    MAX_PAYLOAD_BYTES,
    canonical_json,
    check_identifier,
    check_options,
    check_session,
    parse_batch_id,
)

__all__ = [
    "DEFAULT_ITEM_LIMIT",
    "BatchStatus",
    "ItemSummary",
    "create_batch",
    "get_batch_status",
    "unfinished_batch_ids",
]

#: Items listed by :func:`get_batch_status` unless asked otherwise.
DEFAULT_ITEM_LIMIT = 1000

# Rows per INSERT statement: asyncpg caps a statement at 32767 bind
# parameters, and an item row takes three.
_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class ItemSummary:
    """One item as the status page shows it."""

    position: int
    state: ItemState
    attempts: int
    result: Any
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch stands. Counts come from the batch row, which workers update
    in the same transaction that records each item, so they agree with the items.
    """

    batch_id: uuid.UUID
    tenant_id: str
    created_by: str
    processor: str
    state: BatchState
    total: int
    completed: int
    failed: int
    progress: float
    options: Mapping[str, Any]
    metadata: Mapping[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: Items per state, counted from the item table (``running`` = claimed now).
    item_counts: Mapping[str, int]
    #: The listed items (``item_offset``/``item_limit``), in position order.
    items: tuple[ItemSummary, ...]

    @property
    def finished(self) -> bool:
        return self.state.value in FINAL_BATCH_STATUSES

    @property
    def remaining(self) -> int:
        return self.total - self.completed - self.failed

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from the first claim to the last result (so far, while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or self.updated_at
        return (end - self.started_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a JSON response (datetimes and UUIDs left to the encoder)."""
        data = asdict(self)
        data["state"] = self.state.value
        data["items"] = [{**item, "state": item["state"].value} for item in data["items"]]
        data["finished"] = self.finished
        data["remaining"] = self.remaining
        data["duration_seconds"] = self.duration_seconds
        return data


def _check_items(items: object) -> list[Any]:
    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a list of JSON values, got {type(items).__name__}")
    if not items:
        raise ValueError("items is empty: a batch needs at least one item")
    if len(items) > MAX_ITEMS:
        raise ValueError(
            f"batch too large: {len(items)} items; the limit is {MAX_ITEMS} (split it into several batches)"
        )
    seen: dict[str, int] = {}
    for position, item in enumerate(items):
        if item is None:
            raise ValueError(f"items[{position}] is None: every item needs a payload")
        key = canonical_json(f"items[{position}]", item, max_bytes=MAX_PAYLOAD_BYTES)
        first = seen.setdefault(key, position)
        if first != position:
            raise ValueError(f"duplicate items: items[{position}] equals items[{first}]")
    return list(items)


async def create_batch(
    session: AsyncSession,
    *,
    tenant_id: str,
    items: Sequence[Any],
    created_by: str,
    options: Mapping[str, Any] | None = None,
    processor: str = "default",
) -> uuid.UUID:
    """Write a new batch and its items; return its id.

    The caller owns the transaction: this neither begins nor commits, so the
    batch appears (and can be processed) once the caller commits::

        async with get_session() as s, s.begin():
            batch_id = await create_batch(s, tenant_id=t, items=domains, created_by=user)

    Args:
        items: JSON-serialisable payloads, one per item, in processing order;
            at most :data:`~session_runtime.batch.validation.MAX_ITEMS`, none
            ``None``, no two equal, each at most 64 KiB as JSON.
        options: JSON-serialisable settings kept with the batch.
        processor: what kind of work the batch is, for listings and dispatch.

    Raises:
        ValueError: empty, oversized or duplicate items, a payload that is not
            JSON, blank ids. Nothing is written.
        TypeError: arguments of the wrong type. Nothing is written.
    """
    check_session(session)
    tenant = check_identifier("tenant_id", tenant_id, max_length=255)
    author = check_identifier("created_by", created_by, max_length=255)
    kind = check_identifier("processor", processor, max_length=100)
    settings = check_options(options)
    payloads = _check_items(items)

    batch_id = uuid.uuid4()
    await session.execute(
        insert(BatchJob).values(
            id=batch_id,
            tenant_id=tenant,
            created_by=author,
            processor=kind,
            status=BatchState.PENDING.value,
            total_items=len(payloads),
            options=settings,
        )
    )
    rows = [
        {"batch_id": batch_id, "position": position, "payload": payload}
        for position, payload in enumerate(payloads)
    ]
    for start in range(0, len(rows), _INSERT_CHUNK):
        await session.execute(insert(BatchItem), rows[start : start + _INSERT_CHUNK])
    return batch_id


async def get_batch_status(
    session: AsyncSession,
    *,
    batch_id: uuid.UUID | str,
    tenant_id: str,
    item_offset: int = 0,
    item_limit: int | None = DEFAULT_ITEM_LIMIT,
) -> BatchStatus:
    """The status of one of ``tenant_id``'s batches.

    Read-only; runs in the caller's transaction (or an autobegun one).

    Args:
        item_offset, item_limit: which items to list (by position); counts
            always cover every item. ``item_limit=0`` lists none, ``None`` all.

    Raises:
        BatchNotFoundError: no such batch for this tenant. Another tenant's
            batch gives the same error, so ids cannot be probed.
        ValueError, TypeError: malformed arguments.
    """
    check_session(session)
    batch = parse_batch_id(batch_id)
    tenant = check_identifier("tenant_id", tenant_id, max_length=255)
    if isinstance(item_offset, bool) or not isinstance(item_offset, int) or item_offset < 0:
        raise ValueError(f"item_offset must be an int >= 0, got {item_offset!r}")
    if item_limit is not None and (
        isinstance(item_limit, bool) or not isinstance(item_limit, int) or item_limit < 0
    ):
        raise ValueError(f"item_limit must be an int >= 0 or None, got {item_limit!r}")

    # Columns, not entities: an entity already in the caller's identity map
    # would come back with its stale attribute values.
    job_table = BatchJob.__table__
    job = (
        await session.execute(
            select(*job_table.c).where(job_table.c.id == batch, job_table.c.tenant_id == tenant)
        )
    ).one_or_none()
    if job is None:
        raise BatchNotFoundError(f"batch {batch} not found")

    counted = await session.execute(
        select(BatchItem.status, func.count())
        .where(BatchItem.batch_id == batch)
        .group_by(BatchItem.status)
    )
    item_counts = {state.value: 0 for state in ItemState}
    item_counts.update({status: count for status, count in counted})

    summaries: tuple[ItemSummary, ...] = ()
    if item_limit != 0:
        listed = await session.execute(
            select(
                BatchItem.position,
                BatchItem.status,
                BatchItem.attempts,
                BatchItem.result,
                BatchItem.error,
                BatchItem.started_at,
                BatchItem.finished_at,
                BatchItem.duration_ms,
            )
            .where(BatchItem.batch_id == batch)
            .order_by(BatchItem.position)
            .offset(item_offset)
            .limit(item_limit)
        )
        summaries = tuple(
            ItemSummary(
                position=row.position,
                state=ItemState(row.status),
                attempts=row.attempts,
                result=row.result,
                error=row.error,
                started_at=row.started_at,
                finished_at=row.finished_at,
                duration_ms=row.duration_ms,
            )
            for row in listed
        )

    return BatchStatus(
        batch_id=job.id,
        tenant_id=job.tenant_id,
        created_by=job.created_by,
        processor=job.processor,
        state=BatchState(job.status),
        total=job.total_items,
        completed=job.completed_items,
        failed=job.failed_items,
        progress=job.progress,
        options=job.options,
        metadata=job.metadata,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        item_counts=item_counts,
        items=summaries,
    )


async def unfinished_batch_ids(
    session: AsyncSession, *, processor: str | None = None, limit: int = 100
) -> list[uuid.UUID]:
    """Ids of batches not final yet, oldest first: what to resume after a restart.

    Not tenant-scoped: for the operator's side (start-up, a worker fleet),
    never for an endpoint. Running ``process_batch_with_own_session`` on a
    batch other workers are already processing is safe; they share it.

    Raises:
        ValueError, TypeError: malformed arguments.
    """
    check_session(session)
    if processor is not None:
        check_identifier("processor", processor, max_length=100)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    query = (
        select(BatchJob.id)
        .where(BatchJob.status.in_([BatchState.PENDING.value, BatchState.RUNNING.value]))
        .order_by(BatchJob.created_at)
        .limit(limit)
    )
    if processor is not None:
        query = query.where(BatchJob.processor == processor)
    return list((await session.execute(query)).scalars())
