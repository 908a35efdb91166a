"""The SQL of the claim loop: claim, record, release, reap, in the worker's short transactions.

Every statement is plain parameterised SQL that works through a transaction
pooler: no session state, no LISTEN/NOTIFY, no session-level advisory locks.
Time comes from the database (``now()``), so leases mean the same on every
worker machine whatever its clock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from typing import cast as type_cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Integer,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from .models import BatchItem, BatchJob, BatchState, ItemState

__all__ = [
    "Claim",
    "Outcome",
    "claim_item",
    "claim_items",
    "is_final",
    "reap_expired",
    "record_outcome",
    "record_outcomes",
    "release_claim",
    "release_claims",
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


async def claim_items(
    session: AsyncSession,
    batch_id: uuid.UUID,
    *,
    owner: str,
    lease: timedelta,
    max_attempts: int,
    limit: int = 1,
    exclude: Collection[int] = (),
) -> list[Claim]:
    """Claim up to ``limit`` claimable items, first positions first.

    Claimable: pending and past its retry time, or running under a lease that
    ran out (its worker died or hung) with attempts left. ``SKIP LOCKED``
    lets concurrent claimers pass over each other's rows instead of queueing.

    ``exclude``: positions the caller holds itself (handlers running, or
    finished with an outcome not recorded yet). On a slow machine the
    caller's own lease on one may run out before its outcome is recorded;
    claiming it again would throw away the result about to be recorded (the
    record's guard then matches nothing) and run the handler once more.
    """
    now = func.now()
    held = (ITEMS.c.position.not_in(sorted(exclude)),) if exclude else ()
    claimable = (
        select(ITEMS.c.position)
        .where(
            ITEMS.c.batch_id == batch_id,
            *held,
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
        .limit(limit)
        .with_for_update(skip_locked=True)
        # A materialised CTE runs once. As "position IN (subquery)" the planner
        # may rescan the subquery, and each rescan locks further rows: more
        # items claimed than the limit.
        .cte("claimable")
        .prefix_with("MATERIALIZED")
    )
    rows = (
        await session.execute(
            update(ITEMS)
            .where(ITEMS.c.batch_id == batch_id, ITEMS.c.position == claimable.c.position)
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
    ).all()
    claims = [Claim(batch_id, row.position, row.payload, row.attempts, owner) for row in rows]
    return sorted(claims, key=lambda claim: claim.position)


async def claim_item(
    session: AsyncSession,
    batch_id: uuid.UUID,
    *,
    owner: str,
    lease: timedelta,
    max_attempts: int,
) -> Claim | None:
    """Claim the first claimable item, or return None."""
    claims = await claim_items(
        session, batch_id, owner=owner, lease=lease, max_attempts=max_attempts, limit=1
    )
    return claims[0] if claims else None


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


@dataclass(frozen=True)
class Outcome:
    """What became of a claim: ``error=None`` succeeded with ``result``; an error
    with ``retry_in`` goes back to pending for a retry; an error without fails.
    """

    claim: Claim
    result: Any = None
    error: str | None = None
    retry_in: timedelta | None = None
    duration_ms: int = 0


def _outcome_rows(outcomes: Sequence[Outcome]) -> Any:
    """The outcomes as a table: ``unnest`` of one array parameter per column.

    One statement records any number of outcomes, in a fixed number of round
    trips; the results travel as JSON text and become ``jsonb`` in SQL.
    """
    columns: dict[str, tuple[Any, list[Any]]] = {
        "position": (Integer, []),
        "attempt": (Integer, []),
        "status": (Text, []),
        "result": (Text, []),
        "error": (Text, []),
        "retry_s": (Double, []),
        "duration_ms": (BigInteger, []),
    }
    for outcome in outcomes:
        error = None if outcome.error is None else outcome.error[:MAX_ERROR_CHARS]
        if error is None:
            status = ItemState.SUCCEEDED.value
        elif outcome.retry_in is not None:
            status = _PENDING
        else:
            status = ItemState.FAILED.value
        row = {
            "position": outcome.claim.position,
            "attempt": outcome.claim.attempt,
            "status": status,
            "result": json.dumps(outcome.result) if error is None else None,
            "error": error,
            "retry_s": outcome.retry_in.total_seconds() if outcome.retry_in is not None else None,
            "duration_ms": outcome.duration_ms,
        }
        for name, value in row.items():
            columns[name][1].append(value)
    arrays = [
        bindparam(f"outcome_{name}", values, type_=ARRAY(type_))
        for name, (type_, values) in columns.items()
    ]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, type_) for name, (type_, _) in columns.items()))
        .render_derived(name="outcome")
    )


async def record_outcomes(
    session: AsyncSession, batch_id: uuid.UUID, outcomes: Sequence[Outcome]
) -> tuple[list[bool], str | None]:
    """Record outcomes of claims on one batch; return (recorded per outcome, batch status).

    Each outcome is guarded by its claim (owner + attempt): one whose claim
    went stale (its lease ran out and the item was claimed again or reaped)
    matches no row and is not recorded. The batch counts then move by the
    outcomes that were recorded, in the same transaction, as its last
    statement: the batch row is the one row every recorder locks, so it is
    held only until the commit. The status is None when no outcome finished
    an item (nothing to count).
    """
    if not outcomes:
        return [], None
    owners = {outcome.claim.owner for outcome in outcomes}
    if len(owners) != 1 or any(o.claim.batch_id != batch_id for o in outcomes):
        raise ValueError("record_outcomes: outcomes of one worker and one batch at a time")
    now = func.now()
    row = _outcome_rows(outcomes)
    pending = row.c.status == _PENDING
    matched = await session.execute(
        update(ITEMS)
        .where(
            ITEMS.c.batch_id == batch_id,
            ITEMS.c.position == row.c.position,
            ITEMS.c.attempts == row.c.attempt,
            ITEMS.c.claimed_by == owners.pop(),
            ITEMS.c.status == _RUNNING,
        )
        .values(
            status=row.c.status,
            result=cast(row.c.result, JSONB),
            # The last error stays when a retry succeeds.
            error=func.coalesce(row.c.error, ITEMS.c.error),
            # claimed_by stays on a finished item: it names the worker that recorded it.
            claimed_by=case((pending, None), else_=ITEMS.c.claimed_by),
            lease_expires_at=None,
            retry_at=case(
                (pending, now + func.make_interval(0, 0, 0, 0, 0, 0, row.c.retry_s)), else_=None
            ),
            finished_at=case((pending, None), else_=now),
            duration_ms=row.c.duration_ms,
            updated_at=now,
        )
        .returning(ITEMS.c.position)
    )
    done = set(matched.scalars())
    recorded = [outcome.claim.position in done for outcome in outcomes]
    completed = failed = 0
    for outcome, ok in zip(outcomes, recorded, strict=True):
        if ok and outcome.error is None:
            completed += 1
        elif ok and outcome.retry_in is None:
            failed += 1
    if not completed and not failed:
        return recorded, None
    status: str | None = (
        await session.execute(_count_update(batch_id, completed=completed, failed=failed))
    ).scalar_one_or_none()
    return recorded, status


async def record_outcome(
    session: AsyncSession,
    claim: Claim,
    *,
    result: Any = None,
    error: str | None = None,
    retry_in: timedelta | None = None,
    duration_ms: int,
) -> tuple[bool, str | None]:
    """Record one claim's outcome: (recorded, batch status when the counts moved)."""
    outcome = Outcome(claim, result, error, retry_in, duration_ms)
    recorded, status = await record_outcomes(session, claim.batch_id, [outcome])
    return recorded[0], status


async def release_claims(session: AsyncSession, claims: Sequence[Claim]) -> int:
    """Give claims back unfinished; return how many were still held."""
    return sum([await release_claim(session, claim) for claim in claims])


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
        .cte("expired")
        .prefix_with("MATERIALIZED")
    )
    reaped = (
        await session.execute(
            update(ITEMS)
            .where(ITEMS.c.batch_id == batch_id, ITEMS.c.position == expired.c.position)
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
