"""process_batch_with_own_session(): the claim loop that runs a batch's items.

Why our own loop and not a PostgreSQL job queue (procrastinate, pgqueuer):
those wake workers with LISTEN/NOTIFY, which a transaction pooler never
supports, and the batch must run through the same pooler and engine as the
app. Workers poll with ``SELECT … FOR UPDATE SKIP LOCKED`` claims instead,
backing off briefly when nothing is claimable.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ..session import get_background_session
from .claims import (
    Claim,
    Outcome,
    claim_items,
    is_final,
    reap_expired,
    record_outcomes,
    release_claims,
    start_batch,
)
from .errors import BatchNotFoundError, PermanentItemError
from .models import BatchState
from .validation import parse_batch_id

__all__ = [
    "DEFAULT_CONNECT_BUDGET",
    "Handler",
    "WorkerReport",
    "process_batch_with_own_session",
    "server_not_ready",
]

logger = logging.getLogger("session_runtime.batch")

#: ``handler(payload)``: awaited outside any transaction; its return value
#: (JSON-serialisable) becomes the item's result, an exception its error.
Handler = Callable[[Any], Awaitable[Any]]

T = TypeVar("T")

# Polling back-off when nothing is claimable: starts short so a batch whose
# last items free up soon finishes soon, doubles up to poll_interval.
_MIN_BACKOFF = 0.05
# Database errors in a row (pooler restart, failover) a worker rides out
# with back-off before it gives up and raises.
_MAX_DB_ERRORS = 5

#: How long a worker waits, by default, for a database that answers it is not
#: accepting connections yet (starting up, crash recovery): what ``pg_ctl
#: start -w`` allows a server to start (``PGCTLTIMEOUT``).
DEFAULT_CONNECT_BUDGET = timedelta(seconds=60)
# Back-off while the database is not ready: 50 ms doubling to this, so the
# worker notices the end of recovery within a second.
_MAX_NOT_READY_BACKOFF = 1.0

# SQLSTATE cannot_connect_now.
_CANNOT_CONNECT_NOW = "57P03"
# PostgreSQL's 57P03 messages that mean "not yet" (not "shutting down").
# pgbouncer relays them to a client waiting for its login with its own
# SQLSTATE (08P01), and psycopg's connect errors carry none: the text is all
# that is left there.
_NOT_READY_MESSAGES = (
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "the database system is in recovery mode",
)


def server_not_ready(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is up but not accepting connections *yet*.

    True for SQLSTATE 57P03 (``cannot_connect_now``: starting up, crash
    recovery, not yet consistent, a standby without hot standby) anywhere in
    the chain of causes, except "the database system is shutting down"; and
    for an error whose message is one of PostgreSQL's "not yet" messages
    (pgbouncer relays them under SQLSTATE 08P01). Such a server will accept
    connections soon without anybody doing anything, so it is worth waiting
    for, where a refused connect or a timeout is not.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        text = str(error)
        if getattr(error, "sqlstate", None) == _CANNOT_CONNECT_NOW and "shutting down" not in text:
            return True
        if any(message in text for message in _NOT_READY_MESSAGES):
            return True
        for inner in (getattr(error, "orig", None), error.__cause__):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return False


@dataclass
class WorkerReport:
    """What one ``process_batch_with_own_session`` call did."""

    batch_id: uuid.UUID
    worker_id: str
    #: Items this worker recorded as succeeded / failed for good.
    succeeded: int = 0
    failed: int = 0
    #: Handler errors that were retried (the item went back to pending).
    retried: int = 0
    #: Items failed because their last lease ran out (dead or hung worker).
    reaped: int = 0
    #: Outcomes not recorded because the claim had gone stale meanwhile.
    stale: int = 0
    #: The batch's status when this worker stopped.
    state: BatchState | None = None
    seconds: float = 0.0
    #: Database steps retried because the database was not accepting
    #: connections yet (starting up, crash recovery).
    not_ready_retries: int = 0


def _positive_seconds(name: str, value: object) -> float:
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, got {type(value).__name__}")
    seconds = value.total_seconds()
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return seconds


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _default_worker_id() -> str:
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Worker:
    """One worker: a database loop and up to ``concurrency`` handler tasks.

    Only the loop talks to the database, one short transaction at a time:
    each records every outcome that finished since the last one and claims
    items for the free handler slots. So a worker holds at most one pooled
    connection, and only for the length of a transaction, however many
    handlers run; and when results arrive faster than a transaction takes,
    they are recorded together, which keeps the one lock all recorders of a
    batch share (the batch row) from capping throughput per item.
    """

    def __init__(
        self,
        batch_id: uuid.UUID,
        handler: Handler,
        *,
        owner: str,
        concurrency: int,
        lease: timedelta,
        handler_timeout: float,
        max_attempts: int,
        retry_delay: timedelta,
        poll_interval: float,
        connect_budget: float = DEFAULT_CONNECT_BUDGET.total_seconds(),
    ) -> None:
        self.batch_id = batch_id
        self.handler = handler
        self.owner = owner
        self.concurrency = concurrency
        self.lease = lease
        self.handler_timeout = handler_timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self.connect_budget = connect_budget
        self.report = WorkerReport(batch_id, owner)
        self.running: dict[int, tuple[Claim, asyncio.Task[None]]] = {}
        self.outcomes: list[Outcome] = []
        # Set when a handler finishes, so the loop records at once.
        self.wake = asyncio.Event()
        self.fatal: BaseException | None = None

    def _saw(self, status: str | None) -> bool:
        """Note the batch status; True when it is final."""
        if status is not None:
            self.report.state = BatchState(status)
        return is_final(status)

    async def _db(self, step: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``step(session)`` in its own short transaction, riding out brief outages.

        A database that is not accepting connections yet (:func:`server_not_ready`)
        is retried with back-off for up to ``connect_budget`` seconds from the
        first such answer; then, and for every other database error, at most
        :data:`_MAX_DB_ERRORS` attempts in a row.
        """
        failures = 0
        not_ready_since: float | None = None
        pause = _MIN_BACKOFF
        while True:
            try:
                async with get_background_session() as session, session.begin():
                    return await step(session)
            except (DBAPIError, OSError) as exc:
                if server_not_ready(exc):
                    now = time.monotonic()
                    if not_ready_since is None:
                        not_ready_since = now
                        logger.warning(
                            "batch %s: the database is not accepting connections yet; "
                            "waiting up to %g s for it: %s",
                            self.batch_id,
                            self.connect_budget,
                            exc,
                        )
                    left = not_ready_since + self.connect_budget - now
                    if left > 0:
                        self.report.not_ready_retries += 1
                        await asyncio.sleep(min(pause, left))
                        pause = min(pause * 2, _MAX_NOT_READY_BACKOFF)
                        continue
                    # Budget spent: from now on it counts like any other error.
                failures += 1
                if failures >= _MAX_DB_ERRORS:
                    raise
                logger.warning("batch %s: database error, retrying: %s", self.batch_id, exc)
                await asyncio.sleep(min(self.poll_interval, _MIN_BACKOFF * 2**failures))

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._shutdown()

    async def _loop(self) -> None:
        backoff = _MIN_BACKOFF
        while True:
            if self.fatal is not None:
                raise self.fatal
            self.wake.clear()
            outcomes, self.outcomes = self.outcomes, []
            free = self.concurrency - len(self.running)

            async def step(
                session: AsyncSession, outcomes: list[Outcome] = outcomes, free: int = free
            ) -> tuple[list[Claim], list[bool], str | None]:
                # Claim first, record last: recording ends by locking the
                # batch row, which every recorder of this batch waits for,
                # so it is held only until the commit. (Claiming cannot
                # finish the batch, and when a claim succeeds these records
                # cannot be its last.) Never claim what this worker holds:
                # running, or finished and not recorded yet (its own lease may
                # have run out meanwhile on a slow machine).
                held = {*self.running, *(o.claim.position for o in outcomes)}
                held.update(o.claim.position for o in self.outcomes)
                claims = (
                    await claim_items(
                        session,
                        self.batch_id,
                        owner=self.owner,
                        lease=self.lease,
                        max_attempts=self.max_attempts,
                        limit=free,
                        exclude=held,
                    )
                    if free
                    else []
                )
                recorded, status = await record_outcomes(session, self.batch_id, outcomes)
                return claims, recorded, status

            try:
                claims, recorded, status = await self._db(step)
            except BaseException:
                # Not recorded (or unknown): keep them for the shutdown's
                # attempt; if they were recorded after all, the guard
                # discards the second write.
                self.outcomes[:0] = outcomes
                raise
            self._tally(outcomes, recorded)
            if self._saw(status):
                return
            for claim in claims:
                task = asyncio.ensure_future(self._run_item(claim))
                self.running[claim.position] = (claim, task)
            if claims:
                backoff = _MIN_BACKOFF
                continue
            if not self.running and not self.outcomes:
                # Idle: fail items whose last lease ran out, see if the batch is done.
                reaped, status = await self._db(
                    lambda s: reap_expired(s, self.batch_id, max_attempts=self.max_attempts)
                )
                self.report.reaped += reaped
                if status is None:
                    raise BatchNotFoundError(f"batch {self.batch_id} was deleted while processing")
                if self._saw(status):
                    return
                if reaped:
                    continue
            # Nothing claimable now (other workers hold the rest, or retries
            # wait out their delay): wait for a handler to finish, polling
            # again after a back-off while handler slots are free.
            timeout = backoff if len(self.running) < self.concurrency else None
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                backoff = min(backoff * 2, self.poll_interval)

    def _tally(self, outcomes: list[Outcome], recorded: list[bool]) -> None:
        for outcome, ok in zip(outcomes, recorded, strict=True):
            if not ok:
                self.report.stale += 1
                logger.warning(
                    "batch %s: item %s: lease lost before the result was recorded; discarded",
                    self.batch_id,
                    outcome.claim.position,
                )
            elif outcome.error is None:
                self.report.succeeded += 1
            elif outcome.retry_in is not None:
                self.report.retried += 1
            else:
                self.report.failed += 1

    async def _run_item(self, claim: Claim) -> None:
        started = time.monotonic()
        try:
            result, error, retryable = await self._call(claim)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: stop the worker
            self.fatal = exc
            self.wake.set()
            return
        finally:
            self.running.pop(claim.position, None)
        retry_in: timedelta | None = None
        if error is not None and retryable and claim.attempt < self.max_attempts:
            retry_in = self.retry_delay * 2 ** (claim.attempt - 1)
        duration_ms = int((time.monotonic() - started) * 1000)
        self.outcomes.append(Outcome(claim, result, error, retry_in, duration_ms))
        self.wake.set()

    async def _shutdown(self) -> None:
        """Stop handlers still running; record finished outcomes, hand the rest back.

        Reached on cancellation or an error. Shielded so it is not cancelled
        itself, and bounded so a shutdown cannot hang on the database.
        """
        held = [claim for claim, _ in self.running.values()]
        tasks = [task for _, task in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        outcomes, self.outcomes = self.outcomes, []
        if not held and not outcomes:
            return

        async def step(session: AsyncSession) -> list[bool]:
            await release_claims(session, held)
            recorded, _ = await record_outcomes(session, self.batch_id, outcomes)
            return recorded

        cleanup = asyncio.ensure_future(self._db(step))
        try:
            recorded = await asyncio.wait_for(asyncio.shield(cleanup), 5)
            self._tally(outcomes, recorded)
        except (asyncio.TimeoutError, asyncio.CancelledError, DBAPIError, OSError):
            # Both kinds are safe to lose: the items stay claimed until their
            # lease runs out, then run again (at least once, recorded once).
            logger.warning(
                "batch %s: could not hand back %d items nor record %d finished ones; "
                "they are claimable again after their lease",
                self.batch_id,
                len(held),
                len(outcomes),
            )

    async def _call(self, claim: Claim) -> tuple[Any, str | None, bool]:
        """Run the handler outside any transaction: (result, error text, retryable)."""
        try:
            awaitable = self.handler(claim.payload)
            if not inspect.isawaitable(awaitable):
                return (
                    None,
                    f"TypeError: handler returned {type(awaitable).__name__}, not an awaitable "
                    "(use an async def handler)",
                    False,
                )
            # Bounded by the lease: past it another worker may take the item,
            # and this result would be discarded anyway.
            result = await asyncio.wait_for(awaitable, self.handler_timeout)
        except asyncio.TimeoutError:
            return (
                None,
                f"TimeoutError: handler did not finish within {self.handler_timeout:g} s",
                True,
            )
        except PermanentItemError as exc:
            return None, _describe(exc), False
        except Exception as exc:
            return None, _describe(exc), True
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return None, f"handler result is not JSON-serialisable: {exc}", False
        return result, None, False


async def process_batch_with_own_session(
    batch_id: uuid.UUID | str,
    handler: Handler,
    *,
    concurrency: int = 5,
    lease: timedelta = timedelta(minutes=5),
    max_attempts: int = 3,
    retry_delay: timedelta = timedelta(seconds=1),
    handler_timeout: timedelta | None = None,
    poll_interval: timedelta = timedelta(seconds=1),
    worker_id: str | None = None,
    connect_budget: timedelta = DEFAULT_CONNECT_BUDGET,
) -> WorkerReport:
    """Process a batch's items until the batch is finished; return what this worker did.

    Safe to run in any number of processes or machines at once, and to
    start again after a crash. ``handler(payload)`` is awaited with no
    transaction open (up to ``concurrency`` calls at once), so slow work
    never pins a pooler connection. The database work is short transactions
    on background sessions (:func:`~session_runtime.get_background_session`),
    one at a time per worker: each records the outcomes that finished since
    the previous one and claims items for the free handler slots.

    * Claims use ``SELECT … FOR UPDATE SKIP LOCKED`` and set a lease
      (``lease``, on the database clock). An item whose worker died is
      claimable again once its lease runs out; an item whose last allowed
      lease ran out fails.
    * A handler error is retried after ``retry_delay``, doubling per
      attempt, up to ``max_attempts`` claims; then the item fails with the
      last error. :class:`~session_runtime.batch.PermanentItemError` (and a
      result that is not JSON) fails the item at once. A handler that runs
      past ``handler_timeout`` (default: 90 % of the lease) is cancelled
      and counts as an error.
    * Each outcome is written guarded by its claim (owner + attempt), and
      the batch's counts and progress move in the same transaction by the
      outcomes that matched: a worker whose lease ran out and whose item was
      claimed again records nothing. The batch turns
      ``completed``/``completed_with_errors`` exactly once.
    * Execution is at least once: a worker killed mid-item leaves it to be
      run again. Recording is exactly once.
    * Database errors (pooler restart, failover) are retried with back-off,
      up to 5 attempts in a row per step, then raised. A database that
      answers it is not accepting connections *yet* (SQLSTATE 57P03:
      starting up, crash recovery; pgbouncer relays these messages) is
      waited for instead, with back-off (50 ms doubling to 1 s), for up to
      ``connect_budget`` (default 60 s, what ``pg_ctl start -w`` allows a
      server) from its first such answer, and counted in the report's
      ``not_ready_retries``: a worker that a process manager starts while
      the database recovers does not die and get restarted in a loop. After
      the budget, those errors count like any other.

    Returns when the batch is final (so with several workers, each returns
    once the last item anywhere is recorded). Cancelling it cancels the
    running handlers and hands their items back at once.

    Raises:
        BatchNotFoundError: no such batch.
        ValueError, TypeError: bad arguments (before anything is written).
    """
    batch = parse_batch_id(batch_id)
    if not callable(handler):
        raise TypeError(f"handler must be an async callable, got {type(handler).__name__}")
    _positive_int("concurrency", concurrency)
    _positive_int("max_attempts", max_attempts)
    lease_seconds = _positive_seconds("lease", lease)
    if not isinstance(retry_delay, timedelta) or retry_delay.total_seconds() < 0:
        raise ValueError(f"retry_delay must be a timedelta >= 0, got {retry_delay!r}")
    timeout = lease_seconds * 0.9
    if handler_timeout is not None:
        timeout = _positive_seconds("handler_timeout", handler_timeout)
        if timeout > lease_seconds:
            raise ValueError(
                f"handler_timeout ({handler_timeout}) exceeds the lease ({lease}): another worker "
                "could claim the item while the handler still runs"
            )
    poll = _positive_seconds("poll_interval", poll_interval)
    if not isinstance(connect_budget, timedelta) or connect_budget.total_seconds() < 0:
        raise ValueError(f"connect_budget must be a timedelta >= 0, got {connect_budget!r}")
    owner = _default_worker_id() if worker_id is None else worker_id
    if not isinstance(owner, str) or not owner or len(owner) > 200:
        raise ValueError(
            f"worker_id must be a non-empty str of at most 200 characters, got {owner!r}"
        )

    worker = _Worker(
        batch,
        handler,
        owner=owner,
        concurrency=concurrency,
        lease=lease,
        handler_timeout=timeout,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        poll_interval=poll,
        connect_budget=connect_budget.total_seconds(),
    )
    began = time.monotonic()
    status = await worker._db(lambda s: start_batch(s, batch))
    if status is None:
        raise BatchNotFoundError(f"batch {batch} not found")
    if not worker._saw(status):
        await worker.run()
    worker.report.seconds = time.monotonic() - began
    logger.info("batch %s: worker %s done: %s", batch, owner, worker.report)
    return worker.report
