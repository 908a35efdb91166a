"""The FastAPI example (fixtures/apps/batch_service) end to end through pgbouncer."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import session_runtime
from batch_fixtures import batch_pgbouncer, batch_url, run, tenant
from session_runtime.batch import create_batch, get_batch_status

__all__ = ["batch_pgbouncer", "batch_url"]  # fixtures used by name

APPS = Path(__file__).resolve().parents[2] / "fixtures" / "apps"


@pytest.fixture
def example() -> Iterator[ModuleType]:
    sys.path.insert(0, str(APPS))
    try:
        yield importlib.import_module("batch_service.app")
    finally:
        sys.path.remove(str(APPS))


def test_post_processes_in_background_and_get_reports(batch_url: str, example: ModuleType) -> None:
    """POST returns 202 + status URL; the background task runs the batch; GET is tenant-scoped."""
    owner, other = tenant(), tenant()
    domains = ["Example.org", "bücher.de", "not a domain", "sub.example.co.uk"]

    async def go() -> None:
        transport = httpx.ASGITransport(app=example.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"X-Tenant-ID": owner, "X-User-ID": "alice"}
            created = await client.post("/batches", json={"domains": domains}, headers=headers)
            assert created.status_code == 202, created.text
            body = created.json()
            assert body["status_url"] == f"http://test/batches/{body['batch_id']}"

            # ASGITransport returns after the app's background tasks ran.
            status = await client.get(body["status_url"], headers={"X-Tenant-ID": owner})
            assert status.status_code == 200
            data: dict[str, Any] = status.json()
            assert data["state"] == "completed_with_errors" and data["finished"]
            assert (data["total"], data["completed"], data["failed"], data["progress"]) == (
                4,
                3,
                1,
                1.0,
            )
            assert data["items"][1]["result"] == {
                "domain": "xn--bcher-kva.de",
                "labels": 2,
                "tld": "de",
            }
            invalid = data["items"][2]
            # InvalidDomainError is a PermanentItemError: failed at once, no retries.
            assert invalid["state"] == "failed" and invalid["attempts"] == 1
            assert invalid["error"].startswith("InvalidDomainError: 'not a domain' is not a valid")
            assert data["processor"] == "domain-check" and data["created_by"] == "alice"

            foreign = await client.get(body["status_url"], headers={"X-Tenant-ID": other})
            assert foreign.status_code == 404 and foreign.json() == {"detail": "batch not found"}

            duplicate = await client.post(
                "/batches", json={"domains": ["a.org", "a.org"]}, headers=headers
            )
            assert duplicate.status_code == 422
            assert "duplicate items" in duplicate.json()["detail"]

            empty = await client.post("/batches", json={"domains": []}, headers=headers)
            assert empty.status_code == 422

    run(batch_url, go)


def test_startup_resumes_unfinished_batches(
    batch_url: str, example: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch left unfinished by a previous instance is processed when the app starts."""
    owner = tenant()

    async def leave_unfinished() -> Any:
        async with session_runtime.get_session() as s, s.begin():
            return await create_batch(
                s,
                tenant_id=owner,
                items=["a.org", "b.org"],
                created_by="x",
                processor="domain-check",
            )

    batch_id = run(batch_url, leave_unfinished)
    monkeypatch.setenv("DATABASE_URL", batch_url)
    monkeypatch.setenv("DB_POOLER", "transaction")

    async def start_app() -> Any:
        async with example.app.router.lifespan_context(example.app):
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                async with session_runtime.get_session() as s:
                    status = await get_batch_status(s, batch_id=batch_id, tenant_id=owner)
                if status.finished or asyncio.get_running_loop().time() > deadline:
                    return status
                await asyncio.sleep(0.05)

    status = asyncio.run(start_app())
    assert status.state.value == "completed" and status.completed == 2
