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
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ..session import get_background_engine, get_background_session
from .claims import (
    Claim,
    claim_item,
    is_final,
    reap_expired,
    record_outcome,
    release_claim,
    start_batch,
)
from .errors import BatchNotFoundError, PermanentItemError
from .models import BatchState
from .validation import parse_batch_id

__all__ = ["Handler", "WorkerReport", "process_batch_with_own_session"]

logger = logging.getLogger("session_runtime.batch")

#: ``handler(payload)``: awaited outside any transaction; its return value
#: (JSON-serialisable) becomes the item's result, an exception its error.
Handler = Callable[[Any], Awaitable[Any]]

T = TypeVar("T")

# Polling back-off when nothing is claimable: starts short so a batch whose
# last items free up soon finishes soon, doubles up to poll_interval.
_MIN_BACKOFF = 0.05
# Transaction-scoped, so safe behind a transaction pooler (a plain SET would
# stay on the server connection and leak into other clients' transactions).
_ASYNC_COMMIT = select(func.set_config("synchronous_commit", "off", True))
# Database errors in a row (pooler restart, failover) a worker task rides
# out with back-off before it gives up and raises.
_MAX_DB_ERRORS = 5


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
    errors: list[str] = field(default_factory=list)


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


def _db_slots() -> int:
    """How many database steps may run at once: the background pool's size (at least 1)."""
    size = getattr(get_background_engine().sync_engine.pool, "size", None)
    return max(1, size()) if callable(size) else 5


def _default_worker_id() -> str:
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Stop(Exception):
    """The batch is final: every task of this worker ends."""


class _Worker:
    def __init__(
        self,
        batch_id: uuid.UUID,
        handler: Handler,
        *,
        owner: str,
        lease: timedelta,
        handler_timeout: float,
        max_attempts: int,
        retry_delay: timedelta,
        poll_interval: float,
        durable: bool,
    ) -> None:
        self.batch_id = batch_id
        self.handler = handler
        self.owner = owner
        self.lease = lease
        self.handler_timeout = handler_timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self.durable = durable
        self.report = WorkerReport(batch_id, owner)
        # Set when any task sees the batch final, so idle tasks stop at once
        # instead of at their next poll.
        self.finished = asyncio.Event()
        # Database steps wait here rather than take overflow connections: the
        # pool closes an overflow connection at check-in, so a step per item
        # beyond the pool's size would reconnect (through the pooler) every time.
        self.db_slots = asyncio.Semaphore(_db_slots())

    def _saw(self, status: str | None) -> None:
        if status is not None:
            self.report.state = BatchState(status)
        if is_final(status):
            self.finished.set()

    async def _db(self, step: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``step(session)`` in its own short transaction, riding out brief outages."""
        failures = 0
        while True:
            try:
                async with (
                    self.db_slots,
                    get_background_session() as session,
                    session.begin(),
                ):
                    if not self.durable:
                        await session.execute(_ASYNC_COMMIT)
                    return await step(session)
            except (DBAPIError, OSError) as exc:
                failures += 1
                if failures >= _MAX_DB_ERRORS:
                    raise
                logger.warning("batch %s: database error, retrying: %s", self.batch_id, exc)
                await asyncio.sleep(min(self.poll_interval, _MIN_BACKOFF * 2**failures))

    def _claim_next(self, session: AsyncSession) -> Awaitable[Claim | None]:
        return claim_item(
            session,
            self.batch_id,
            owner=self.owner,
            lease=self.lease,
            max_attempts=self.max_attempts,
        )

    async def run_task(self) -> None:
        backoff = _MIN_BACKOFF
        claim: Claim | None = None
        while not self.finished.is_set():
            if claim is None:
                claim = await self._db(self._claim_next)
            if claim is not None:
                backoff = _MIN_BACKOFF
                claim = await self._process(claim)
                continue
            reaped, status = await self._db(
                lambda s: reap_expired(s, self.batch_id, max_attempts=self.max_attempts)
            )
            self.report.reaped += reaped
            self._saw(status)
            if status is None:
                raise BatchNotFoundError(f"batch {self.batch_id} was deleted while processing")
            if reaped:
                continue
            # Nothing claimable, batch not final: other workers hold the rest,
            # or retries wait out their delay. Poll again soon.
            try:
                await asyncio.wait_for(self.finished.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, self.poll_interval)

    async def _process(self, claim: Claim) -> Claim | None:
        """Run one claimed item, record its outcome; return the next claim, if any."""
        started = time.monotonic()
        try:
            result, error, retryable = await self._call(claim)
        except asyncio.CancelledError:
            # Shutting down mid-item: hand it back so another worker takes it
            # now rather than after the lease. Shielded so the release itself
            # is not cancelled; bounded so shutdown cannot hang on it.
            release = asyncio.ensure_future(self._db(lambda s: release_claim(s, claim)))
            try:
                await asyncio.wait_for(asyncio.shield(release), 5)
            except (asyncio.TimeoutError, asyncio.CancelledError, DBAPIError, OSError):
                logger.warning("batch %s: could not release item %s", self.batch_id, claim.position)
            raise
        duration_ms = int((time.monotonic() - started) * 1000)
        retry_in: timedelta | None = None
        if error is not None and retryable and claim.attempt < self.max_attempts:
            retry_in = self.retry_delay * 2 ** (claim.attempt - 1)

        async def record_and_claim(session: AsyncSession) -> tuple[bool, str | None, Claim | None]:
            # The next claim rides in the same transaction as this result: one
            # commit per item instead of two. Claim first, record last: the
            # record locks the batch row every recorder needs, so it should be
            # held for as short a time as possible before the commit. (When a
            # claim succeeds, this record cannot be the batch's last.)
            following = await self._claim_next(session)
            recorded, status = await record_outcome(
                session,
                claim,
                result=result,
                error=error,
                retry_in=retry_in,
                duration_ms=duration_ms,
            )
            return recorded, status, following

        recorded, status, following = await self._db(record_and_claim)
        if not recorded:
            self.report.stale += 1
            logger.warning(
                "batch %s: item %s: lease lost before the result was recorded; discarded",
                self.batch_id,
                claim.position,
            )
        elif error is None:
            self.report.succeeded += 1
        elif retry_in is not None:
            self.report.retried += 1
        else:
            self.report.failed += 1
        self._saw(status)
        return following

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
    durable: bool = False,
) -> WorkerReport:
    """Process a batch's items until the batch is finished; return what this worker did.

    Safe to run in any number of processes or machines at once, and to
    start again after a crash. Each claim and each result is its own short
    transaction on a background session (:func:`~session_runtime.get_background_session`);
    ``handler(payload)`` is awaited with no transaction open, so slow work
    never pins a pooler connection.

    * Claims use ``SELECT … FOR UPDATE SKIP LOCKED`` and set a lease
      (``lease``, database clock). An item whose worker died is claimable
      again once its lease runs out; an item whose last allowed lease ran
      out fails.
    * A handler error is retried after ``retry_delay``, doubling per
      attempt, up to ``max_attempts`` claims; then the item fails with the
      last error. :class:`~session_runtime.batch.PermanentItemError` (and a
      result that is not JSON) fails the item at once. A handler that runs past ``handler_timeout`` (default: 90 %
      of the lease) is cancelled and counts as an error.
    * The item's outcome and the batch's counts and progress are written in
      one statement, guarded by the claim (owner + attempt): a worker whose
      lease ran out and whose item was claimed again records nothing. The
      batch turns ``completed``/``completed_with_errors`` exactly once.
    * Execution is at least once: a worker killed mid-item leaves it to be
      run again. Recording is exactly once.
    * Every result updates the batch row, so results of one batch are
      recorded one after another; what bounds throughput is how long each
      recorder holds that row, mostly its commit. By default the worker's
      transactions commit with ``synchronous_commit = off`` (``SET LOCAL``,
      transaction-scoped): they do not wait for the WAL flush, which in
      bench/batch_bench.py makes processing several times faster. The price:
      if the *database server* crashes, the results of its last fraction of
      a second are forgotten, items and counts together (so they still
      agree), and those items run again, exactly as after a worker crash.
      ``durable=True`` waits for the flush on every commit.

    Returns when the batch is final (so with several workers, each returns
    once the last item anywhere is recorded). Cancelling it hands the
    items in progress back.

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
    owner = _default_worker_id() if worker_id is None else worker_id
    if not isinstance(owner, str) or not owner or len(owner) > 200:
        raise ValueError(
            f"worker_id must be a non-empty str of at most 200 characters, got {owner!r}"
        )

    worker = _Worker(
        batch,
        handler,
        owner=owner,
        lease=lease,
        handler_timeout=timeout,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        poll_interval=poll,
        durable=bool(durable),
    )
    began = time.monotonic()
    status = await worker._db(lambda s: start_batch(s, batch))
    if status is None:
        raise BatchNotFoundError(f"batch {batch} not found")
    worker._saw(status)
    if not worker.finished.is_set():
        tasks = [asyncio.ensure_future(worker.run_task()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            # One task failing (or this call being cancelled) stops the rest;
            # each hands back the item it holds.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    worker.report.seconds = time.monotonic() - began
    logger.info("batch %s: worker %s done: %s", batch, owner, worker.report)
    return worker.report
