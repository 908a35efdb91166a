"""Run the probes in order and put the report together."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..engine import make_engine
from .backends import sweep
from .burst import engine_burst
from .capacity import session_capacity
from .check_engine import check_engine
from .latency import probe_latency
from .model import Configuration, Report
from .prepared import probe_prepared
from .recommend import recommend
from .startup import probe_startup
from .statements import Statements
from .target import DoctorError, Target, describe_error
from .topology import probe_topology

__all__ = ["diagnose"]

#: Shape of the burst that verifies the printed configuration.
VERIFY_TASKS = 20
VERIFY_TRANSACTIONS = 5


@contextlib.asynccontextmanager
async def _timed(report: Report, name: str) -> AsyncIterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        report.durations_ms[name] = round((time.perf_counter() - start) * 1000, 1)


async def _verify(target: Target, config: Configuration, sql: Statements) -> None:
    """Run the printed configuration, both spellings of it, through the endpoint."""
    plain_args = dict(config.plain_kwargs)
    # The JSON shows an SSLContext as a placeholder; the engine needs the real one.
    plain_args["connect_args"] = {
        **config.plain_kwargs["connect_args"],
        **{k: v for k, v in target.resolved.connect_args.items() if k == "ssl"},
    }
    engines: list[tuple[str, AsyncEngine]] = [
        ("make_engine", make_engine(target.original, **config.make_engine_kwargs)),
        ("create_async_engine", create_async_engine(target.url, **plain_args)),
    ]
    for label, engine in engines:
        try:
            burst = await engine_burst(
                engine,
                sql,
                label,
                tasks=VERIFY_TASKS,
                transactions=VERIFY_TRANSACTIONS,
                deadline=target.timeout * 2,
            )
        finally:
            await engine.dispose()
        if label == "make_engine":
            config.verified = burst
        else:
            config.verified_plain = burst


def _too_old(version: str) -> bool:
    # asyncpg < 0.32 fails ~65 % behind a transaction pooler even with the cache off.
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2]) < (0, 32)


def _verdict(report: Report) -> None:
    prepared, config, check = report.prepared, report.configuration, report.check
    if report.error is not None:
        report.exit_code, report.verdict = 2, report.error
    elif config is None:
        report.exit_code = 1
        why = "no engine configuration passed the prepared-statement probes here"
        if (
            prepared is not None
            and prepared.cache_off is not None
            and prepared.cache_off.top_error()
        ):
            why += f" (statement_cache_size=0: {prepared.cache_off.top_error()})"
        if prepared is not None and _too_old(prepared.asyncpg_version):
            why += f"; asyncpg {prepared.asyncpg_version} is too old: install asyncpg>=0.32"
        report.verdict = why
    elif not config.passed:
        report.exit_code = 1
        report.verdict = "the configuration below failed its own verification burst"
    elif check is not None and not check.passed:
        report.exit_code = 1
        report.verdict = f"{check.spec} fails here; the configuration below is safe"
    else:
        report.verdict = "a safe configuration was found"
        if check is not None:
            report.verdict += f"; {check.spec} passes"


async def diagnose(target: Target, *, check: tuple[str, AsyncEngine] | None = None) -> Report:
    """Probe ``target`` (and the engine in ``check``, disposed at the end).

    Never raises for endpoint problems: they end up in the report.
    """
    report = Report(url=target.masked)
    sql = Statements.new()
    # How long a holder may queue for a server before the pool counts as full.
    wait = min(target.timeout, 1.0)
    dirty: set[int] = set()
    engine = check[1] if check is not None else None
    try:
        async with _timed(report, "connect"):
            conn = await target.connect()
            await conn.close()
        async with _timed(report, "topology"):
            topo, backends = await probe_topology(target, sql.token, wait)
            dirty |= backends
            report.topology = topo
        if topo.kind == "session_pooler":
            async with _timed(report, "session_capacity"):
                topo.capacity = await session_capacity(target, wait)
        async with _timed(report, "startup_parameters"):
            report.startup = await probe_startup(target)
        async with _timed(report, "prepared_statements"):
            report.prepared, backends = await probe_prepared(target, topo.kind, sql, wait)
            dirty |= backends
        async with _timed(report, "latency"):
            report.connect_latency, report.transaction_latency = await probe_latency(target)
        report.configuration = recommend(target, topo, report.prepared, report.startup)
        if report.configuration is not None:
            async with _timed(report, "verify_configuration"):
                await _verify(target, report.configuration, sql)
        if check is not None:
            async with _timed(report, "check_engine"):
                report.check = await check_engine(check[0], check[1], sql, target, topo.kind, wait)
                if report.check.burst is not None and topo.kind == "transaction_pooler":
                    dirty |= report.check.burst.backends
    except DoctorError as exc:
        report.error = target.scrub(str(exc))
    finally:
        if engine is not None:
            await engine.dispose()
        if dirty:
            async with _timed(report, "cleanup"):
                try:
                    await sweep(
                        target,
                        backends=dirty,
                        tag=sql.tag,
                        token=sql.token,
                        cleanup=report.cleanup,
                        wait=wait,
                    )
                except DoctorError as exc:
                    report.cleanup.notes.append(f"cleanup failed: {target.scrub(str(exc))}")
                except Exception as exc:
                    report.cleanup.notes.append(f"cleanup failed: {describe_error(exc)}")
    if report.check is not None and report.cleanup.other_statements:
        report.check.leftover = (
            f"{report.cleanup.other_statements} prepared statements that are not the doctor's "
            f"remain on the {report.cleanup.backends_visited} server connections visited"
        )
    _verdict(report)
    return report
