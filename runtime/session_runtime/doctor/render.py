"""The report as text for people and as JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

from .model import KIND_NAMES, Burst, Report, Timing
from .recommend import render_make_engine, render_plain
from .target import Target

__all__ = ["as_json", "as_text"]

_MEANING = {
    "direct": "every client connection is its own PostgreSQL session; asyncpg's defaults are fine",
    "session_pooler": (
        "a client keeps one server connection while connected; session state lives as long "
        "as the client connection"
    ),
    "transaction_pooler": (
        "each transaction may run on a different server connection: session state (SET, "
        "named prepared statements, temp tables, advisory locks) does not follow the client"
    ),
}


def _ok(flag: bool | None) -> str:
    return {True: "ok", False: "FAILS", None: "not decided"}[flag]


def _timing(name: str, timing: Timing | None) -> str:
    if timing is None:
        return f"  {name}: not measured"
    return (
        f"  {name}: {timing.median:.2f} ms median "
        f"(min {min(timing.samples_ms):.2f}, max {max(timing.samples_ms):.2f}, "
        f"{len(timing.samples_ms)} samples)"
    )


def _burst_line(burst: Burst) -> str:
    line = burst.summary()
    return line if burst.passed else f"{line}; {burst.top_error() or ''}".rstrip("; ")


def as_text(report: Report, target: Target | None) -> str:
    out = [f"session-runtime doctor: {report.url}"]
    topo = report.topology
    if topo is not None:
        out += ["", f"Endpoint: {KIND_NAMES[topo.kind]}"]
        out += [f"  - {line}" for line in topo.evidence]
        out.append(f"  means: {_MEANING[topo.kind]}")
    prepared = report.prepared
    if prepared is not None:
        out += ["", f"Prepared statements (asyncpg {prepared.asyncpg_version})"]
        out.append(f"  asyncpg defaults: {_ok(prepared.defaults_ok)}: {prepared.defaults_evidence}")
        if prepared.cache_off is not None:
            out.append(
                f"  statement_cache_size=0: {_ok(prepared.cache_off.passed)}: "
                f"{_burst_line(prepared.cache_off)}"
            )
    if report.startup is not None:
        out += ["", "Startup parameters (server_settings)"]
        out.append(f"  accepted: {', '.join(report.startup.accepted) or 'none'}")
        for name, why in report.startup.refused.items():
            out.append(f"  refused:  {name}: {why}")
    if topo is not None:
        leaks = {True: "LEAKS", False: "no leak", None: "not observed"}[topo.leaks]
        out += ["", f"Session state between clients: {leaks}", f"  - {topo.leak_evidence}"]
    if report.connect_latency is not None or report.transaction_latency is not None:
        out += ["", "Latency"]
        out.append(_timing("connect", report.connect_latency))
        out.append(
            _timing("trivial transaction (BEGIN; SELECT 1; COMMIT)", report.transaction_latency)
        )
    config = report.configuration
    if config is not None and target is not None:
        out += ["", "Safe configuration"]
        for burst in (config.verified, config.verified_plain):
            if burst is not None:
                out.append(f"  verified ({burst.label}): {_burst_line(burst)}")
        out += ["", "    from session_runtime import make_engine"]
        out.append(f"    {render_make_engine(target, config)}")
        out += ["", "    # or, with your own factory (password masked):"]
        out += [f"    {line}" for line in render_plain(target, config).splitlines()]
        out += [""] + [f"  - {note}" for note in config.notes]
    check = report.check
    if check is not None:
        out += ["", f"Your engine ({check.spec}): {'passes' if check.passed else 'FAILS'}"]
        out.append(f"  {check.description}")
        if check.burst is not None:
            out.append(f"  {_burst_line(check.burst)}")
        elif check.error:
            out.append(f"  a single transaction failed: {check.error}")
        if check.leftover:
            out.append(f"  {check.leftover}")
    cleanup = report.cleanup
    if cleanup.notes or cleanup.settings_reset or cleanup.statements_deallocated:
        out += [
            "",
            f"Cleanup: {cleanup.settings_reset} probe settings reset, "
            f"{cleanup.statements_deallocated} doctor statements deallocated on "
            f"{cleanup.backends_visited} server connections",
        ]
        out += [f"  - {note}" for note in cleanup.notes]
    total = sum(report.durations_ms.values()) / 1000
    out += ["", f"exit {report.exit_code}: {report.verdict} ({total:.2f} s)"]
    return "\n".join(out) + "\n"


def _burst(burst: Burst | None) -> dict[str, Any] | None:
    return None if burst is None else burst.as_json()


def as_json(report: Report, target: Target | None) -> str:
    topo, prepared, config, check = (
        report.topology,
        report.prepared,
        report.configuration,
        report.check,
    )
    data: dict[str, Any] = {
        "url": report.url,
        "exit_code": report.exit_code,
        "verdict": report.verdict,
        "error": report.error,
        "endpoint": None
        if topo is None
        else {"kind": topo.kind, "evidence": topo.evidence, "meaning": _MEANING[topo.kind]},
        "prepared_statements": None
        if prepared is None
        else {
            "asyncpg_version": prepared.asyncpg_version,
            "defaults": {"ok": prepared.defaults_ok, "evidence": prepared.defaults_evidence},
            "defaults_burst": _burst(prepared.defaults_burst),
            "statement_cache_size_0": _burst(prepared.cache_off),
        },
        "startup_parameters": None
        if report.startup is None
        else {"accepted": report.startup.accepted, "refused": report.startup.refused},
        "session_state": None
        if topo is None
        else {
            "leaks": topo.leaks,
            "evidence": topo.leak_evidence,
            "resets_between_clients": topo.resets_between_clients,
        },
        "latency": {
            "connect": None if report.connect_latency is None else report.connect_latency.as_json(),
            "transaction": None
            if report.transaction_latency is None
            else report.transaction_latency.as_json(),
        },
        "configuration": None
        if config is None or target is None
        else {
            "pooler": config.pooler,
            "make_engine": {
                "kwargs": config.make_engine_kwargs,
                "code": render_make_engine(target, config),
            },
            "create_async_engine": {
                "url": config.plain_url,
                "kwargs": config.plain_kwargs,
                "code": render_plain(target, config),
            },
            "notes": config.notes,
            "verified": _burst(config.verified),
            "verified_plain": _burst(config.verified_plain),
        },
        "check_engine": None
        if check is None
        else {
            "spec": check.spec,
            "engine": check.description,
            "passed": check.passed,
            "error": check.error,
            "burst": _burst(check.burst),
            "leftover": check.leftover,
        },
        "cleanup": {
            "backends_visited": report.cleanup.backends_visited,
            "settings_reset": report.cleanup.settings_reset,
            "statements_deallocated": report.cleanup.statements_deallocated,
            "other_statements": report.cleanup.other_statements,
            "notes": report.cleanup.notes,
        },
        "durations_ms": report.durations_ms,
    }
    return json.dumps(data, indent=2) + "\n"
