"""Tables of the batch service: one ``BatchJob`` row per batch, one ``BatchItem`` per item.

They live in their own :data:`metadata`, so an application can create them
with :func:`session_runtime.batch.create_all` or add ``metadata`` to its own
Alembic ``target_metadata`` and autogenerate a migration.

Statuses are plain strings with CHECK constraints rather than PostgreSQL
ENUM types: an ENUM needs its own ``CREATE TYPE`` and cannot gain a value
inside a transaction on older servers, which makes migrations awkward.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "FINAL_BATCH_STATUSES",
    "BatchBase",
    "BatchItem",
    "BatchJob",
    "BatchState",
    "ItemState",
    "metadata",
]


class BatchState(str, Enum):
    """Life cycle of a batch. The last two are final; a batch reaches one exactly once."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"


class ItemState(str, Enum):
    """Life cycle of an item: ``running`` means claimed under a lease."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINAL_BATCH_STATUSES = frozenset(
    {BatchState.COMPLETED.value, BatchState.COMPLETED_WITH_ERRORS.value}
)


def _values(enum: type[Enum]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum)


metadata = MetaData()


class BatchBase(DeclarativeBase):
    """Declarative base of the batch tables (separate from the application's own base)."""

    metadata = metadata


class BatchJob(BatchBase):
    """One batch: who asked for it, what it holds, how far it got."""

    __tablename__ = "batch_jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(BatchState)})", name="batch_jobs_status_check"),
        CheckConstraint(
            "completed_items >= 0 AND failed_items >= 0 "
            "AND completed_items + failed_items <= total_items",
            name="batch_jobs_counts_check",
        ),
        # Status pages list a tenant's batches newest first.
        Index("batch_jobs_tenant_created_idx", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(255))
    processor: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32), server_default=BatchState.PENDING.value)
    total_items: Mapped[int] = mapped_column(Integer)
    completed_items: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed_items: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    progress: Mapped[float] = mapped_column(Double, server_default=text("0"))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # "metadata" is reserved on declarative classes; the column keeps the plain name.
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchItem(BatchBase):
    """One unit of work of a batch, claimed by at most one worker at a time."""

    __tablename__ = "batch_items"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(ItemState)})", name="batch_items_status_check"),
        # The claim query's scan: only unfinished items, in order.
        Index(
            "batch_items_claimable_idx",
            "batch_id",
            "position",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    payload: Mapped[Any] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default=ItemState.PENDING.value)
    #: Claims so far; each claim's number is its token, so a worker whose
    #: lease ran out and whose item was claimed again cannot record a result.
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    result: Mapped[Any | None] = mapped_column(JSONB)
    #: The last handler error; kept when a retry succeeds, so the status shows it needed one.
    error: Mapped[str | None] = mapped_column(Text)
    #: The worker holding the claim; on a finished item, its last claimant.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: A pending item that failed is not claimable before this time (retry back-off).
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Milliseconds the last handler call took, for the status page.
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
