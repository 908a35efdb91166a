"""What the doctor found: plain data, rendered by :mod:`.render`."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Literal

EndpointKind = Literal["direct", "session_pooler", "transaction_pooler"]

#: What each kind is called in the text report.
KIND_NAMES: dict[EndpointKind, str] = {
    "direct": "direct PostgreSQL",
    "session_pooler": "session-mode pooler",
    "transaction_pooler": "transaction-mode pooler",
}


def first_line(text: str, limit: int = 200) -> str:
    return (text.strip().splitlines() or [""])[0][:limit]


@dataclass
class Burst:
    """Concurrent clients running parameterised, repeated statements: what went wrong."""

    label: str
    clients: int
    transactions: int
    ok: int = 0
    wrong: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0
    timed_out: bool = False
    # Server backends the statements ran on: where a named statement may be left.
    backends: set[int] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return not self.errors and not self.wrong and not self.timed_out and self.ok > 0

    def summary(self) -> str:
        shape = f"{self.clients} clients x {self.transactions} transactions"
        if self.passed:
            return f"{shape}: 0 errors, 0 wrong results ({self.seconds:.2f} s)"
        failed = sum(self.errors.values())
        parts = [f"{failed} of {self.clients * self.transactions} transactions failed"]
        if self.wrong:
            parts.append(f"{self.wrong} wrong results")
        if self.timed_out:
            parts = [f"{self.ok} of {self.clients * self.transactions} done, {failed} failed"]
            parts.append(f"did not finish in {self.seconds:.1f} s")
        return f"{shape}: " + ", ".join(parts)

    def top_error(self) -> str | None:
        return self.errors.most_common(1)[0][0] if self.errors else None

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "clients": self.clients,
            "transactions_per_client": self.transactions,
            "ok": self.ok,
            "wrong": self.wrong,
            "errors": dict(self.errors.most_common()),
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Topology:
    kind: EndpointKind
    evidence: list[str]
    #: A session-level SET by one client was seen by another: True/False, None if not observed.
    leaks: bool | None
    leak_evidence: str
    #: Between clients that follow one another on a session pooler: did the pooler reset state?
    resets_between_clients: bool | None = None
    #: Session pooler: server connections the doctor could hold at once (capped).
    capacity: int | None = None


@dataclass
class PreparedStatements:
    asyncpg_version: str
    defaults_ok: bool | None
    defaults_evidence: str
    cache_off: Burst | None = None
    defaults_burst: Burst | None = None


@dataclass
class StartupParameters:
    accepted: list[str] = field(default_factory=list)
    #: parameter -> the error the endpoint answered with
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class Timing:
    samples_ms: list[float]

    @property
    def median(self) -> float:
        ordered = sorted(self.samples_ms)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def as_json(self) -> dict[str, Any]:
        return {
            "median_ms": round(self.median, 3),
            "min_ms": round(min(self.samples_ms), 3),
            "max_ms": round(max(self.samples_ms), 3),
            "samples": len(self.samples_ms),
        }


@dataclass
class Configuration:
    """The engine configuration the probes proved safe, as data and as code."""

    pooler: Literal["transaction", "session", "none"]
    make_engine_kwargs: dict[str, Any]
    plain_url: str
    plain_kwargs: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    verified: Burst | None = None
    verified_plain: Burst | None = None

    @property
    def passed(self) -> bool:
        return all(b is not None and b.passed for b in (self.verified, self.verified_plain))


@dataclass
class EngineCheck:
    spec: str
    description: str
    passed: bool
    error: str | None
    burst: Burst | None
    leftover: str | None = None


@dataclass
class Cleanup:
    backends_visited: int = 0
    settings_reset: int = 0
    statements_deallocated: int = 0
    #: Prepared statements on the visited backends that are not the doctor's.
    other_statements: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    url: str
    exit_code: int = 0
    verdict: str = ""
    error: str | None = None
    topology: Topology | None = None
    prepared: PreparedStatements | None = None
    startup: StartupParameters | None = None
    connect_latency: Timing | None = None
    transaction_latency: Timing | None = None
    configuration: Configuration | None = None
    check: EngineCheck | None = None
    cleanup: Cleanup = field(default_factory=Cleanup)
    durations_ms: dict[str, float] = field(default_factory=dict)
