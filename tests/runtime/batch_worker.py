"""A batch worker process for the tests and the benchmark.

python batch_worker.py URL BATCH_ID WORKER_ID LOG_PATH LEASE_S DELAY_S [READY_PATH GO_PATH]

Items whose payload has ``"fail": true`` always raise. Every handler call
appends ``position`` to LOG_PATH (one short O_APPEND write per line, so
concurrent processes do not interleave), so the test can count calls per
item. With READY_PATH/GO_PATH, the worker touches READY_PATH once started
and waits for GO_PATH, so several workers start together. Prints its
WorkerReport as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import session_runtime
from session_runtime.batch import process_batch_with_own_session


async def main(argv: list[str]) -> None:
    url, batch_id, worker_id, log_path = argv[:4]
    lease, delay = float(argv[4]), float(argv[5])
    session_runtime.configure(url, pooler="transaction")
    log = (
        os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log_path != "-" else -1
    )

    async def handler(payload: Any) -> Any:
        if log >= 0:
            os.write(log, f"{payload['n']}\n".encode())
        if delay:
            await asyncio.sleep(delay)
        if payload.get("fail"):
            raise RuntimeError(f"item {payload['n']} always fails")
        return {"n": payload["n"], "worker": worker_id}

    try:
        if len(argv) > 6:
            Path(argv[6]).touch()
            while not Path(argv[7]).exists():
                time.sleep(0.01)
        report = await process_batch_with_own_session(
            batch_id,
            handler,
            concurrency=5,
            lease=timedelta(seconds=lease),
            max_attempts=3,
            retry_delay=timedelta(milliseconds=50),
            poll_interval=timedelta(milliseconds=200),
            worker_id=worker_id,
        )
    finally:
        await session_runtime.dispose()
    print(
        json.dumps(
            {
                "succeeded": report.succeeded,
                "failed": report.failed,
                "retried": report.retried,
                "reaped": report.reaped,
                "stale": report.stale,
                "state": report.state.value if report.state else None,
                "seconds": report.seconds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
