"""The SQL of the claim loop: claim, record, release, reap — each one short transaction.

Every statement is plain parameterised SQL that works through a transaction
pooler: no session state, no LISTEN/NOTIFY, no session-level advisory locks.
Time comes from the database (``now()``), so leases mean the same on every
worker machine whatever its clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from typing import cast as type_cast

from sqlalchemy import (
    ColumnElement,
    Double,
    Table,
    Update,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from .models import BatchItem, BatchJob, BatchState, ItemState

__all__ = [
    "Claim",
    "claim_item",
    "is_final",
    "reap_expired",
    "record_outcome",
    "release_claim",
    "start_batch",
]

# Core tables: the claim loop needs no identity map, and Core statements
# skip the ORM's per-statement bookkeeping on the hot path.
JOBS = type_cast(Table, BatchJob.__table__)
ITEMS = type_cast(Table, BatchItem.__table__)

_PENDING = ItemState.PENDING.value
_RUNNING = ItemState.RUNNING.value
_FINAL = (BatchState.COMPLETED.value, BatchState.COMPLETED_WITH_ERRORS.value)

#: Longest error text stored per item.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Claim:
    """An item this worker holds under a lease. ``attempt`` is the claim's token."""

    batch_id: uuid.UUID
    position: int
    payload: Any
    attempt: int
    owner: str


async def start_batch(session: AsyncSession, batch_id: uuid.UUID) -> str | None:
    """Mark a pending batch running; return its status, or None when it does not exist."""
    await session.execute(
        update(JOBS)
        .where(JOBS.c.id == batch_id, JOBS.c.status == BatchState.PENDING.value)
        .values(status=BatchState.RUNNING.value, started_at=func.now(), updated_at=func.now())
    )
    status: str | None = (
        await session.execute(select(JOBS.c.status).where(JOBS.c.id == batch_id))
    ).scalar_one_or_none()
    return status


async def claim_item(
    session: AsyncSession,
    batch_id: uuid.UUID,
    *,
    owner: str,
    lease: timedelta,
    max_attempts: int,
) -> Claim | None:
    """Claim the first claimable item, or return None.

    Claimable: pending and past its retry time, or running under a lease that
    ran out (its worker died or hung) with attempts left. ``SKIP LOCKED``
    lets concurrent claimers pass over each other's rows instead of queueing.
    """
    now = func.now()
    claimable = (
        select(ITEMS.c.position)
        .where(
            ITEMS.c.batch_id == batch_id,
            or_(
                and_(
                    ITEMS.c.status == _PENDING,
                    or_(ITEMS.c.retry_at.is_(None), ITEMS.c.retry_at <= now),
                ),
                and_(
                    ITEMS.c.status == _RUNNING,
                    ITEMS.c.lease_expires_at <= now,
                    ITEMS.c.attempts < max_attempts,
                ),
            ),
        )
        .order_by(ITEMS.c.position)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            update(ITEMS)
            .where(ITEMS.c.batch_id == batch_id, ITEMS.c.position == claimable)
            .values(
                status=_RUNNING,
                attempts=ITEMS.c.attempts + 1,
                claimed_by=owner,
                lease_expires_at=now + lease,
                retry_at=None,
                started_at=func.coalesce(ITEMS.c.started_at, now),
                updated_at=now,
            )
            .returning(ITEMS.c.position, ITEMS.c.payload, ITEMS.c.attempts)
        )
    ).one_or_none()
    if row is None:
        return None
    return Claim(batch_id, row.position, row.payload, row.attempts, owner)


def _held_by(claim: Claim) -> ColumnElement[bool]:
    # The guard of every write on a claimed item: still running, still ours,
    # still the same claim. A worker whose lease ran out and whose item was
    # claimed again (attempts went up) or reaped (status changed) matches nothing.
    return and_(
        ITEMS.c.batch_id == claim.batch_id,
        ITEMS.c.position == claim.position,
        ITEMS.c.status == _RUNNING,
        ITEMS.c.claimed_by == claim.owner,
        ITEMS.c.attempts == claim.attempt,
    )


def _count_update(batch_id: uuid.UUID, *, completed: int, failed: int) -> Update:
    # Counts, progress and the one-time move to a final status, in one UPDATE:
    # the batch row's lock orders concurrent recorders, so exactly one of
    # them sees the last item done and sets finished_at.
    done_after = JOBS.c.completed_items + JOBS.c.failed_items + literal(completed + failed)
    failed_after = JOBS.c.failed_items + literal(failed)
    finishing = and_(done_after >= JOBS.c.total_items, JOBS.c.finished_at.is_(None))
    return (
        update(JOBS)
        .where(JOBS.c.id == batch_id)
        .values(
            completed_items=JOBS.c.completed_items + literal(completed),
            failed_items=failed_after,
            progress=cast(done_after, Double) / JOBS.c.total_items,
            status=case(
                (
                    finishing,
                    case(
                        (failed_after > 0, BatchState.COMPLETED_WITH_ERRORS.value),
                        else_=BatchState.COMPLETED.value,
                    ),
                ),
                else_=JOBS.c.status,
            ),
            finished_at=case((finishing, func.now()), else_=JOBS.c.finished_at),
            error=case(
                (
                    and_(finishing, failed_after > 0),
                    func.format("%s of %s items failed", failed_after, JOBS.c.total_items),
                ),
                else_=JOBS.c.error,
            ),
            updated_at=func.now(),
        )
        .returning(JOBS.c.status)
    )


async def record_outcome(
    session: AsyncSession,
    claim: Claim,
    *,
    result: Any = None,
    error: str | None = None,
    retry_in: timedelta | None = None,
    duration_ms: int,
) -> tuple[bool, str | None]:
    """Record a claim's outcome; return (recorded, batch status when the counts moved).

    ``recorded`` is False when the claim was stale (lease ran out and the
    item was claimed again or reaped): nothing is written then.

    ``error=None``: succeeded with ``result``. An error with ``retry_in``:
    back to pending, claimable again after that delay. An error without:
    failed for good. The item row and the batch counts change in one
    statement (a data-modifying CTE), so they cannot disagree, and the batch
    counts move only when the guarded item update matched.
    """
    now = func.now()
    if error is not None:
        error = error[:MAX_ERROR_CHARS]
    if error is not None and retry_in is not None:
        retried = await session.execute(
            update(ITEMS)
            .where(_held_by(claim))
            .values(
                status=_PENDING,
                error=error,
                claimed_by=None,
                lease_expires_at=None,
                retry_at=now + retry_in,
                duration_ms=duration_ms,
                updated_at=now,
            )
            .returning(ITEMS.c.position)
        )
        return retried.first() is not None, None

    # claimed_by stays on a finished item: it names the worker that recorded it.
    final: dict[str, Any] = {
        "lease_expires_at": None,
        "finished_at": now,
        "updated_at": now,
        "duration_ms": duration_ms,
    }
    if error is None:
        final |= {"status": ItemState.SUCCEEDED.value, "result": result}
    else:
        final |= {"status": ItemState.FAILED.value, "error": error}
    done = (
        update(ITEMS).where(_held_by(claim)).values(**final).returning(ITEMS.c.position).cte("done")
    )
    counts = _count_update(
        claim.batch_id, completed=int(error is None), failed=int(error is not None)
    ).where(select(done.c.position).exists())
    status: str | None = (await session.execute(counts)).scalar_one_or_none()
    return status is not None, status


async def release_claim(session: AsyncSession, claim: Claim) -> bool:
    """Give a claim back unfinished (worker shutting down): pending again, attempt not counted."""
    released = await session.execute(
        update(ITEMS)
        .where(_held_by(claim))
        .values(
            status=_PENDING,
            attempts=ITEMS.c.attempts - 1,
            claimed_by=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
        .returning(ITEMS.c.position)
    )
    return released.first() is not None


async def reap_expired(
    session: AsyncSession, batch_id: uuid.UUID, *, max_attempts: int
) -> tuple[int, str | None]:
    """Fail items whose last allowed lease ran out; return (items failed, batch status).

    Such an item's worker died or its handler hung on every attempt; it
    counts as failed, in the same statement that fails it.
    """
    now = func.now()
    expired = (
        select(ITEMS.c.position)
        .where(
            ITEMS.c.batch_id == batch_id,
            ITEMS.c.status == _RUNNING,
            ITEMS.c.lease_expires_at <= now,
            ITEMS.c.attempts >= max_attempts,
        )
        .with_for_update(skip_locked=True)
    )
    reaped = (
        await session.execute(
            update(ITEMS)
            .where(ITEMS.c.batch_id == batch_id, ITEMS.c.position.in_(expired.scalar_subquery()))
            .values(
                status=ItemState.FAILED.value,
                error=func.format(
                    "lease expired on attempt %s of %s: the worker died or the handler hung",
                    ITEMS.c.attempts,
                    max_attempts,
                ),
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            .returning(ITEMS.c.position)
        )
    ).all()
    if reaped:
        status: str | None = (
            await session.execute(_count_update(batch_id, completed=0, failed=len(reaped)))
        ).scalar_one_or_none()
        return len(reaped), status
    status = (
        await session.execute(select(JOBS.c.status).where(JOBS.c.id == batch_id))
    ).scalar_one_or_none()
    return 0, status


def is_final(status: str | None) -> bool:
    return status in _FINAL
