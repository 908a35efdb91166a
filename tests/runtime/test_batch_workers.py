"""Batch processing by several worker OS processes through pgbouncer (transaction mode).

Each worker is ``batch_worker.py`` in its own process; the test inspects the
tables afterwards. Items whose payload says ``fail`` always raise.

Timing: the 30 s and 60 s deadlines only turn a hang into a failure (the
work takes 1-4 s idle). The SIGKILL test's bounds are logical, not timed:
the kill comes once 30 % are done and lands before 60 % (the gap is ~60
items of work, the test's lag a few items); B cannot finish in less than
half a lease because it must wait for A's leases and run >= 80 items of 50 ms
at concurrency 5 (>= 0.8 s) after starting an interpreter.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import session_runtime
from batch_fixtures import batch_pgbouncer, batch_url, item_rows, run, tenant
from session_runtime.batch import BatchJob, create_batch
from sqlalchemy import select

__all__ = ["batch_pgbouncer", "batch_url"]  # fixtures used by name

WORKER = str(Path(__file__).with_name("batch_worker.py"))
ITEMS = 200
FAILING = set(range(0, ITEMS, 20))  # 5 %
MAX_ATTEMPTS = 3  # batch_worker.py's setting


def _new_batch(url: str) -> uuid.UUID:
    async def go() -> uuid.UUID:
        async with session_runtime.get_session() as s, s.begin():
            return await create_batch(
                s,
                tenant_id=tenant(),
                created_by="test",
                items=[{"n": n, "fail": n in FAILING} for n in range(ITEMS)],
            )

    return run(url, go)


def _start(
    url: str,
    batch_id: uuid.UUID,
    worker_id: str,
    log: Path,
    *,
    lease: float,
    delay: float,
    barrier: tuple[Path, Path] | None = None,
) -> subprocess.Popen[str]:
    args = [sys.executable, WORKER, url, str(batch_id), worker_id, str(log), str(lease), str(delay)]
    if barrier:
        args += [str(barrier[0]), str(barrier[1])]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def _calls(log: Path) -> collections.Counter[int]:
    return collections.Counter(int(line) for line in log.read_text().split())


def _final_state(url: str, batch_id: uuid.UUID) -> tuple[Any, list[Any]]:
    async def go() -> tuple[Any, list[Any]]:
        async with session_runtime.get_session() as s:
            job = (await s.execute(select(BatchJob.__table__).where(BatchJob.id == batch_id))).one()
        return job, await item_rows(batch_id)

    return run(url, go)


def _check_consistent(job: Any, items: list[Any]) -> None:
    """The guarantees every run must keep, whatever happened to the workers."""
    assert len(items) == ITEMS
    by_status = collections.Counter(item.status for item in items)
    # Status counts equal the item table; nothing left pending or claimed.
    assert by_status == {"succeeded": job.completed_items, "failed": job.failed_items}
    assert job.completed_items == ITEMS - len(FAILING)
    assert job.failed_items == len(FAILING)
    assert job.progress == 1.0
    assert job.status == "completed_with_errors"
    assert job.finished_at is not None and job.started_at is not None
    assert job.error == f"{len(FAILING)} of {ITEMS} items failed"
    for item in items:
        if item.position in FAILING:
            assert item.status == "failed" and item.attempts == MAX_ATTEMPTS, item
            assert item.error == f"RuntimeError: item {item.position} always fails"
            assert item.result is None
        else:
            assert item.status == "succeeded", item
            assert item.result == {"n": item.position, "worker": item.claimed_by}
            assert item.finished_at is not None and item.lease_expires_at is None


def test_two_worker_processes_share_a_batch(batch_url: str, tmp_path: Path) -> None:
    """200 items, two processes at once, 5 % always raise: each item recorded once, counts match."""
    batch_id = _new_batch(batch_url)
    log = tmp_path / "calls.log"
    go = tmp_path / "go"
    workers = {
        name: _start(
            batch_url,
            batch_id,
            name,
            log,
            lease=30,
            delay=0.02,
            barrier=(tmp_path / f"{name}.ready", go),
        )
        for name in ("A", "B")
    }
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"{name}.ready").exists() for name in workers):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.02)
    go.touch()
    reports = {name: _finish(proc) for name, proc in workers.items()}

    job, items = _final_state(batch_url, batch_id)
    _check_consistent(job, items)
    calls = _calls(log)
    for n in range(ITEMS):
        # Succeeding items ran exactly once; failing ones once per attempt.
        assert calls[n] == (MAX_ATTEMPTS if n in FAILING else 1), n
        assert items[n].attempts == calls[n]
    # Both workers took part, and their reports add up to the table.
    assert all(r["succeeded"] > 0 for r in reports.values()), reports
    assert sum(r["succeeded"] for r in reports.values()) == ITEMS - len(FAILING)
    assert sum(r["failed"] for r in reports.values()) == len(FAILING)
    assert sum(r["retried"] for r in reports.values()) == len(FAILING) * (MAX_ATTEMPTS - 1)
    assert all(r["stale"] == 0 and r["state"] == "completed_with_errors" for r in reports.values())
    recorded_by = collections.Counter(item.claimed_by for item in items)
    assert {name: recorded_by[name] for name in workers} == {
        name: r["succeeded"] + r["failed"] for name, r in reports.items()
    }


def test_sigkilled_worker_is_taken_over(batch_url: str, tmp_path: Path) -> None:
    """SIGKILL a worker at ~30 %, start another: its leased items run again after the lease, nothing lost or counted twice."""
    batch_id = _new_batch(batch_url)
    log = tmp_path / "calls.log"
    lease = 2.0
    first = _start(batch_url, batch_id, "A", log, lease=lease, delay=0.05)

    async def done_count() -> int:
        async with session_runtime.get_session() as s:
            row = (
                await s.execute(
                    select(BatchJob.completed_items + BatchJob.failed_items).where(
                        BatchJob.id == batch_id
                    )
                )
            ).scalar_one()
            return int(row)

    async def wait_for_30_percent() -> int:
        import asyncio

        deadline = time.monotonic() + 30
        while (done := await done_count()) < ITEMS * 0.3:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "worker A made no progress"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        return done

    run(batch_url, wait_for_30_percent)
    first.communicate()
    _, at_kill = _final_state(batch_url, batch_id)
    held = {item.position for item in at_kill if item.status == "running"}
    recorded_by_a = {item.position for item in at_kill if item.status in ("succeeded", "failed")}
    assert held, "the killed worker held no items: nothing to take over"
    assert 0.25 * ITEMS <= len(recorded_by_a) <= 0.6 * ITEMS

    started = time.monotonic()
    report = _finish(_start(batch_url, batch_id, "B", log, lease=lease, delay=0.05))
    took = time.monotonic() - started

    job, items = _final_state(batch_url, batch_id)
    _check_consistent(job, items)
    calls = _calls(log)
    for item in items:
        if item.position in recorded_by_a:
            assert item.claimed_by == "A"
        else:
            assert item.claimed_by == "B"
        if item.position in FAILING:
            continue
        if item.position in held:
            # Claimed by A, which was killed before recording it (maybe before
            # running it: a worker claims its next item when it records one),
            # then claimed and run by B.
            assert item.attempts == 2 and calls[item.position] in (1, 2), item
        else:
            assert item.attempts == 1 and calls[item.position] == 1, item
    # B recorded exactly what A had not; no item counted twice.
    assert report["succeeded"] + report["failed"] == ITEMS - len(recorded_by_a)
    assert report["stale"] == 0
    # B had to wait for A's leases to run out, and not much longer.
    assert took >= lease * 0.5
    assert os.environ.get("CI") or took < 30
