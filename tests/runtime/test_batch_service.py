"""The batch service's public functions through pgbouncer (transaction mode), in one process."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import session_runtime
from batch_fixtures import batch_pgbouncer, batch_url, item_rows, run, table_counts, tenant
from session_runtime.batch import (
    MAX_ITEMS,
    MAX_PAYLOAD_BYTES,
    BatchItem,
    BatchNotFoundError,
    BatchState,
    ItemState,
    PermanentItemError,
    create_all,
    create_batch,
    drop_all,
    get_batch_status,
    process_batch_with_own_session,
    unfinished_batch_ids,
)
from session_runtime.batch.claims import claim_item, claim_items, record_outcome
from sqlalchemy import func, update

__all__ = ["batch_pgbouncer", "batch_url"]  # fixtures used by name


async def _new_batch(tenant_id: str, items: list[Any], **kwargs: Any) -> uuid.UUID:
    async with session_runtime.get_session() as s, s.begin():
        return await create_batch(s, tenant_id=tenant_id, items=items, created_by="alice", **kwargs)


async def _status(batch_id: uuid.UUID | str, tenant_id: str, **kwargs: Any) -> Any:
    async with session_runtime.get_session() as s:
        return await get_batch_status(s, batch_id=batch_id, tenant_id=tenant_id, **kwargs)


async def _echo(payload: Any) -> Any:
    return {"echo": payload}


def test_create_process_and_status(batch_url: str) -> None:
    """A batch runs to completion in-process; the status reports counts, progress, items and timings."""
    owner = tenant()

    async def go() -> None:
        batch_id = await _new_batch(
            owner, [f"example-{n}.org" for n in range(12)], options={"depth": 2}, processor="dns"
        )
        before = await _status(batch_id, owner)
        assert before.state is BatchState.PENDING and before.progress == 0.0
        assert before.item_counts == {"pending": 12, "running": 0, "succeeded": 0, "failed": 0}
        assert before.started_at is None and before.duration_seconds is None

        report = await process_batch_with_own_session(batch_id, _echo, concurrency=3)
        assert (report.succeeded, report.failed, report.stale) == (12, 0, 0)
        assert report.state is BatchState.COMPLETED

        status = await _status(batch_id, owner, item_offset=10, item_limit=5)
        assert status.state is BatchState.COMPLETED and status.finished
        assert (status.total, status.completed, status.failed, status.remaining) == (12, 12, 0, 0)
        assert status.progress == 1.0
        assert status.item_counts == {"pending": 0, "running": 0, "succeeded": 12, "failed": 0}
        assert [i.position for i in status.items] == [10, 11]
        assert status.items[0].result == {"echo": "example-10.org"}
        assert status.items[0].state is ItemState.SUCCEEDED and status.items[0].attempts == 1
        assert status.processor == "dns" and status.options == {"depth": 2}
        assert status.created_by == "alice" and status.tenant_id == owner
        assert status.duration_seconds is not None and status.duration_seconds >= 0
        assert status.finished_at is not None and status.started_at is not None
        as_dict = status.as_dict()
        assert as_dict["state"] == "completed" and as_dict["items"][1]["state"] == "succeeded"

        # Running a finished batch again is a no-op.
        again = await process_batch_with_own_session(batch_id, _echo)
        assert (again.succeeded, again.failed) == (0, 0) and again.state is BatchState.COMPLETED

    run(batch_url, go)


def test_tenant_isolation(batch_url: str) -> None:
    """Another tenant's batch is "not found", with the same message as an id that does not exist."""
    owner, other = tenant(), tenant()

    async def go() -> None:
        batch_id = await _new_batch(owner, [1, 2])
        with pytest.raises(BatchNotFoundError) as foreign:
            await _status(batch_id, other)
        missing = uuid.uuid4()
        with pytest.raises(BatchNotFoundError) as unknown:
            await _status(missing, owner)
        assert str(foreign.value) == f"batch {batch_id} not found"
        assert str(unknown.value) == f"batch {missing} not found"
        assert owner not in str(foreign.value)
        assert (await _status(str(batch_id), owner)).total == 2

    run(batch_url, go)


def test_caller_owns_the_transaction(batch_url: str) -> None:
    """create_batch neither begins nor commits: a rollback leaves nothing behind."""
    owner = tenant()

    async def go() -> None:
        async with session_runtime.get_session() as s:
            before = await table_counts(s)
            await s.commit()
            async with s.begin():
                await create_batch(s, tenant_id=owner, items=[1], created_by="alice")
                assert s.in_transaction()
                await s.rollback()
            assert await table_counts(s) == before

        async with session_runtime.get_session() as s:
            await s.begin()
            batch_id = await create_batch(s, tenant_id=owner, items=[1, 2], created_by="alice")
            # Not visible to another session until the caller commits.
            with pytest.raises(BatchNotFoundError):
                await _status(batch_id, owner)
            await s.commit()
        assert (await _status(batch_id, owner)).total == 2

    run(batch_url, go)


_BAD_CREATE: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"items": []}, ValueError, "items is empty"),
    ({"items": [1, 2, 1]}, ValueError, r"duplicate items: items\[2\] equals items\[0\]"),
    ({"items": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}, ValueError, "duplicate items"),
    ({"items": list(range(MAX_ITEMS + 1))}, ValueError, f"batch too large: {MAX_ITEMS + 1} items"),
    ({"items": ["x" * MAX_PAYLOAD_BYTES]}, ValueError, r"items\[0\] is .* bytes as JSON"),
    ({"items": [1, None]}, ValueError, r"items\[1\] is None"),
    ({"items": [object()]}, ValueError, r"items\[0\] is not JSON-serialisable"),
    ({"items": [math.nan]}, ValueError, r"items\[0\] is not JSON-serialisable"),
    ({"items": "abc"}, TypeError, "items must be a list"),
    ({"items": {"a": 1}}, TypeError, "items must be a list"),
    ({"items": (n for n in range(3))}, TypeError, "items must be a list"),
    ({"tenant_id": ""}, ValueError, "tenant_id must not be empty"),
    ({"tenant_id": 7}, TypeError, "tenant_id must be a str"),
    ({"tenant_id": "t" * 256}, ValueError, "tenant_id is 256 characters long"),
    ({"created_by": "  "}, ValueError, "created_by must not be empty"),
    ({"options": [1]}, TypeError, "options must be a mapping"),
    ({"options": {1: "x"}}, ValueError, "options keys must be strings"),
    ({"options": {"a": {1, 2}}}, ValueError, "options is not JSON-serialisable"),
    ({"processor": ""}, ValueError, "processor must not be empty"),
]


@pytest.mark.parametrize(
    ("change", "error", "message"), _BAD_CREATE, ids=[m for _, _, m in _BAD_CREATE]
)
def test_create_batch_rejects_bad_input(
    batch_url: str, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Each bad argument raises a clear error before anything reaches the database."""

    async def go() -> None:
        async with session_runtime.get_session() as s:
            before = await table_counts(s)
            await s.commit()
            kwargs: dict[str, Any] = {"tenant_id": tenant(), "items": [1, 2], "created_by": "alice"}
            with pytest.raises(error, match=message):
                await create_batch(s, **{**kwargs, **change})
            # Nothing was sent: the session never began a transaction, and a
            # commit now writes nothing.
            assert not s.in_transaction()
            await s.commit()
            assert await table_counts(s) == before

    run(batch_url, go)


def test_bad_session_argument(batch_url: str) -> None:
    async def go() -> None:
        with pytest.raises(TypeError, match="session must be a sqlalchemy AsyncSession"):
            await create_batch(None, tenant_id="t", items=[1], created_by="a")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="session must be a sqlalchemy AsyncSession"):
            await get_batch_status("db", batch_id=uuid.uuid4(), tenant_id="t")  # type: ignore[arg-type]

    run(batch_url, go)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_id": "not-a-uuid"}, ValueError, "batch_id must be a UUID"),
        ({"batch_id": 12}, TypeError, "batch_id must be a UUID or a UUID string"),
        ({"tenant_id": ""}, ValueError, "tenant_id must not be empty"),
        ({"item_limit": -1}, ValueError, "item_limit must be an int >= 0 or None"),
        ({"item_offset": 1.5}, ValueError, "item_offset must be an int >= 0"),
    ],
)
def test_get_batch_status_rejects_bad_input(
    batch_url: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, [1])
        with pytest.raises(error, match=message):
            await _status(**{"batch_id": batch_id, "tenant_id": owner, **kwargs})

    run(batch_url, go)


async def _sync_handler(payload: Any) -> Any:
    return payload


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_id": "nope"}, ValueError, "batch_id must be a UUID"),
        ({"handler": None}, TypeError, "handler must be an async callable"),
        ({"concurrency": 0}, ValueError, "concurrency must be >= 1"),
        ({"concurrency": 2.0}, TypeError, "concurrency must be an int"),
        ({"lease": timedelta(0)}, ValueError, "lease must be positive"),
        ({"lease": 300}, TypeError, "lease must be a datetime.timedelta"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be >= 1"),
        (
            {"retry_delay": timedelta(seconds=-1)},
            ValueError,
            "retry_delay must be a timedelta >= 0",
        ),
        (
            {"lease": timedelta(seconds=5), "handler_timeout": timedelta(seconds=6)},
            ValueError,
            "handler_timeout .* exceeds the lease",
        ),
        ({"poll_interval": timedelta(0)}, ValueError, "poll_interval must be positive"),
        ({"worker_id": ""}, ValueError, "worker_id must be a non-empty str"),
    ],
)
def test_process_rejects_bad_input(
    batch_url: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Bad arguments raise before the batch is touched (it stays pending, never claimed)."""

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, [1, 2])
        call: dict[str, Any] = {"batch_id": batch_id, "handler": _echo, **kwargs}
        with pytest.raises(error, match=message):
            await process_batch_with_own_session(call.pop("batch_id"), call.pop("handler"), **call)
        status = await _status(batch_id, owner)
        assert status.state is BatchState.PENDING
        assert status.item_counts["pending"] == 2 and all(i.attempts == 0 for i in status.items)

    run(batch_url, go)


def test_process_unknown_batch(batch_url: str) -> None:
    async def go() -> None:
        async with session_runtime.get_session() as s:
            before = await table_counts(s)
        missing = uuid.uuid4()
        with pytest.raises(BatchNotFoundError, match=f"batch {missing} not found"):
            await process_batch_with_own_session(missing, _echo)
        async with session_runtime.get_session() as s:
            assert await table_counts(s) == before

    run(batch_url, go)


def test_stale_claim_cannot_record(batch_url: str) -> None:
    """A worker whose lease ran out and whose item was claimed again records nothing, counts nothing.

    The lease is a minute, so "still leased" holds however slow the machine;
    then it runs out at the database's ``now()`` (an UPDATE, not a sleep: a
    200 ms lease could run out before the "still leased" check on a loaded
    machine). Leases running out by the clock: test_item_whose_last_lease_ran_out_fails.
    """

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, ["only"])

        async def tx(step: Callable[[Any], Awaitable[Any]]) -> Any:
            async with session_runtime.get_background_session() as s, s.begin():
                return await step(s)

        lease = timedelta(minutes=1)
        slow = await tx(
            lambda s: claim_item(s, batch_id, owner="slow", lease=lease, max_attempts=3)
        )
        assert slow is not None and slow.attempt == 1
        # Still leased: nobody else can claim it.
        assert (
            await tx(lambda s: claim_item(s, batch_id, owner="fast", lease=lease, max_attempts=3))
            is None
        )
        await tx(
            lambda s: s.execute(
                update(BatchItem)
                .where(BatchItem.batch_id == batch_id)
                .values(lease_expires_at=func.now())
            )
        )
        fast = await tx(
            lambda s: claim_item(s, batch_id, owner="fast", lease=lease, max_attempts=3)
        )
        assert fast is not None and fast.attempt == 2 and fast.position == slow.position

        assert await tx(lambda s: record_outcome(s, slow, result="slow", duration_ms=1)) == (
            False,
            None,
        )
        assert await tx(lambda s: record_outcome(s, fast, result="fast", duration_ms=1)) == (
            True,
            "completed",
        )
        # Late again, after the item is done: still nothing.
        assert await tx(lambda s: record_outcome(s, slow, error="boom", duration_ms=1)) == (
            False,
            None,
        )

        status = await _status(batch_id, owner)
        assert (status.completed, status.failed, status.progress) == (1, 0, 1.0)
        assert status.items[0].result == "fast" and status.items[0].attempts == 2

    run(batch_url, go)


def test_hanging_handler_is_bounded_by_the_lease(batch_url: str) -> None:
    """A handler that never returns is cancelled before its lease runs out, retried, then failed.

    The timeout is 90 % of the 500 ms lease, so the outcome is recorded
    50 ms before the lease runs out only on a fast machine; on a slow one the
    lease is gone first. Either way the worker records it: it never claims
    an item it holds (test_worker_never_reclaims_an_item_it_holds), and no
    other worker is there to.
    """

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, ["hang", "ok"])

        async def handler(payload: Any) -> Any:
            if payload == "hang":
                await asyncio.Event().wait()
            return payload

        report = await process_batch_with_own_session(
            batch_id,
            handler,
            lease=timedelta(milliseconds=500),
            max_attempts=2,
            retry_delay=timedelta(0),
        )
        assert (report.succeeded, report.failed, report.retried) == (1, 1, 1)
        status = await _status(batch_id, owner)
        assert status.state is BatchState.COMPLETED_WITH_ERRORS
        assert status.error == "1 of 2 items failed"
        hung = status.items[0]
        assert hung.state is ItemState.FAILED and hung.attempts == 2
        assert hung.error == "TimeoutError: handler did not finish within 0.45 s"

    run(batch_url, go)


def test_worker_never_reclaims_an_item_it_holds(batch_url: str) -> None:
    """An outcome recorded after the worker's own lease ran out still counts.

    ``handler_timeout`` equal to the lease: the handler is cancelled a full
    lease after it started, which is later than its claim's ``now()``, so the
    transaction that records the timeout always begins after the lease ran
    out (deterministic: time only moves forward). That transaction claims
    before it records; it must not claim the item back (attempt 2), which
    would make the attempt-1 outcome stale and run the handler again.
    """

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, ["hang"])

        async def handler(payload: Any) -> Any:
            await asyncio.Event().wait()

        report = await process_batch_with_own_session(
            batch_id,
            handler,
            lease=timedelta(milliseconds=300),
            handler_timeout=timedelta(milliseconds=300),
            max_attempts=2,
            retry_delay=timedelta(0),
        )
        assert (report.retried, report.failed, report.stale) == (1, 1, 0)
        item = (await _status(batch_id, owner)).items[0]
        assert item.state is ItemState.FAILED and item.attempts == 2
        assert item.error == "TimeoutError: handler did not finish within 0.3 s"

    run(batch_url, go)


def test_handler_results_that_are_not_json_fail_the_item(batch_url: str) -> None:
    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, [1])

        async def handler(payload: Any) -> Any:
            return {"value": math.inf}

        def not_async(payload: Any) -> Any:
            return payload

        await process_batch_with_own_session(batch_id, handler, max_attempts=1)
        item = (await _status(batch_id, owner)).items[0]
        assert item.state is ItemState.FAILED
        assert item.error is not None and item.error.startswith(
            "handler result is not JSON-serialisable"
        )

        second = await _new_batch(owner, [1])
        await process_batch_with_own_session(second, not_async, max_attempts=1)
        item = (await _status(second, owner)).items[0]
        assert item.error == (
            "TypeError: handler returned int, not an awaitable (use an async def handler)"
        )

    run(batch_url, go)


def test_cancelled_worker_hands_items_back(batch_url: str) -> None:
    """Cancelling a worker mid-item releases its claims at once, attempt not counted; a new worker finishes."""

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, ["a", "b", "c"])
        started = asyncio.Event()

        async def stuck(payload: Any) -> Any:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(process_batch_with_own_session(batch_id, stuck, concurrency=2))
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rows = await item_rows(batch_id)
        assert [(r.status, r.attempts, r.claimed_by) for r in rows] == [("pending", 0, None)] * 3

        report = await process_batch_with_own_session(batch_id, _echo)
        assert report.succeeded == 3 and report.state is BatchState.COMPLETED

    run(batch_url, go)


def test_permanent_errors_are_not_retried(batch_url: str) -> None:
    """PermanentItemError fails the item on its first attempt; other errors use every attempt."""

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, ["permanent", "transient"])

        async def handler(payload: Any) -> Any:
            if payload == "permanent":
                raise PermanentItemError("no such customer")
            raise ConnectionError("upstream down")

        report = await process_batch_with_own_session(
            batch_id, handler, max_attempts=3, retry_delay=timedelta(milliseconds=10)
        )
        assert (report.failed, report.retried) == (2, 2)
        items = (await _status(batch_id, owner)).items
        assert (items[0].attempts, items[0].error) == (1, "PermanentItemError: no such customer")
        assert (items[1].attempts, items[1].error) == (3, "ConnectionError: upstream down")

    run(batch_url, go)


def test_claims_respect_the_limit(batch_url: str) -> None:
    """A claim takes at most ``limit`` items, first positions first, and skips rows another claimer holds."""

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, list(range(50)))
        lease = timedelta(minutes=1)
        async with session_runtime.get_background_session() as first, first.begin():
            held = await claim_items(
                first, batch_id, owner="one", lease=lease, max_attempts=3, limit=3
            )
            assert [c.position for c in held] == [0, 1, 2]
            # Concurrently, while the first transaction still holds its row locks.
            async with session_runtime.get_background_session() as second, second.begin():
                more = await claim_items(
                    second, batch_id, owner="two", lease=lease, max_attempts=3, limit=4
                )
            assert [c.position for c in more] == [3, 4, 5, 6]
        status = await _status(batch_id, owner)
        assert status.item_counts["running"] == 7 and status.item_counts["pending"] == 43

    run(batch_url, go)


def test_item_whose_last_lease_ran_out_fails(batch_url: str) -> None:
    """A claim abandoned on its last allowed attempt is failed (and counted) by the next worker.

    The 100 ms lease runs out by the clock: the 200 ms sleep is a lower bound
    on the time that passes, so this holds however slow the machine.
    """

    async def go() -> None:
        owner = tenant()
        batch_id = await _new_batch(owner, ["abandoned", "fine"])
        async with session_runtime.get_background_session() as s, s.begin():
            dead = await claim_items(
                s, batch_id, owner="dead", lease=timedelta(milliseconds=100), max_attempts=1
            )
        assert [c.position for c in dead] == [0]
        await asyncio.sleep(0.2)
        report = await process_batch_with_own_session(batch_id, _echo, max_attempts=1)
        assert (report.succeeded, report.reaped) == (1, 1)
        status = await _status(batch_id, owner)
        assert (status.completed, status.failed, status.progress) == (1, 1, 1.0)
        assert status.state is BatchState.COMPLETED_WITH_ERRORS
        lost = status.items[0]
        assert lost.state is ItemState.FAILED and lost.attempts == 1
        assert lost.error == "lease expired on attempt 1 of 1: the worker died or the handler hung"

    run(batch_url, go)


def test_unfinished_batch_ids(batch_url: str) -> None:
    """Lists pending and running batches (for resuming after a restart), filtered by processor."""

    async def go() -> None:
        owner = tenant()
        kind = f"kind-{owner}"
        waiting = await _new_batch(owner, [1], processor=kind)
        done = await _new_batch(owner, [2], processor=kind)
        await process_batch_with_own_session(done, _echo)
        async with session_runtime.get_session() as s:
            assert await unfinished_batch_ids(s, processor=kind) == [waiting]
            assert waiting in await unfinished_batch_ids(s, limit=10_000)
            with pytest.raises(ValueError, match="limit must be an int >= 1"):
                await unfinished_batch_ids(s, limit=0)
            with pytest.raises(ValueError, match="processor must not be empty"):
                await unfinished_batch_ids(s, processor="")
        with pytest.raises(TypeError, match="session must be a sqlalchemy AsyncSession"):
            await unfinished_batch_ids(None)  # type: ignore[arg-type]

    run(batch_url, go)


def test_schema_helpers(batch_url: str) -> None:
    """create_all is idempotent and safe to call from several tasks at once; both refuse a non-engine."""

    async def go() -> None:
        engine = session_runtime.get_engine()
        await asyncio.gather(*(create_all(engine) for _ in range(3)))
        for helper in (create_all, drop_all):
            with pytest.raises(TypeError, match="engine must be a sqlalchemy AsyncEngine"):
                await helper(batch_url)  # type: ignore[arg-type]

    run(batch_url, go)
