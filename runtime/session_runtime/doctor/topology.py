"""Probe 1 and 4: what is in front of PostgreSQL, and does session state leak between clients.

Decided from behaviour, never from the host name. Client A makes a
session-level ``SET`` (of a placeholder setting that affects nothing) and
notes its backend; two other clients then hold open transactions while A
runs three more. A transaction pooler shows itself by giving another
client A's backend while A is still connected, or by moving A's
transactions between backends. Without either, A disconnects and new
clients, each staying connected so that none can be given a server
connection another one holds, look for A's backend: handed to one of them
(a session pooler, whose reset shows in the setting), still alive but
never handed out (a pooler keeping it), or gone (direct). Which of its
idle server connections a pooler hands out first depends on the order in
which they came back from its reset query, that is on scheduling; holding
the clients makes the outcome independent of it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .backends import PROBE_SETTING, Holders, Seen, read_backend
from .model import Topology
from .target import Target

__all__ = ["probe_topology"]

_SET = (
    "SELECT pg_backend_pid() AS pid, set_config($1, $2, false) AS probe, inet_server_port() AS port"
)


def _pids(seen: list[Seen]) -> str:
    return ", ".join(str(pid) for pid in sorted({s.pid for s in seen}))


def _port_hint(target: Target, server_port: int | None) -> list[str]:
    url_port = target.url.port or 5432
    if server_port is None or server_port == url_port:
        return []
    return [
        f"PostgreSQL listens on port {server_port}, the URL on {url_port}: something sits in between"
    ]


async def _backend_alive(conn: Any, pid: int) -> bool:
    """Whether ``pid`` is still a backend (of any database)."""
    count = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    return bool(count)


async def _transaction_pooler(
    p1: int, token: str, held: list[Seen], moved: list[Seen], waited: bool
) -> Topology:
    evidence: list[str] = []
    shared = [s for s in held if s.pid == p1]
    if shared:
        evidence.append(
            f"another client's transaction ran on backend {p1} while the client that had just "
            f"used it was still connected: server connections are shared between clients"
        )
    if moved:
        kept = any(s.probe == token for s in moved)
        evidence.append(
            f"one client's consecutive transactions ran on backends {p1} and {_pids(moved)}"
            + ("" if kept else "; its session-level SET did not follow it")
        )
    if waited:
        evidence.append(
            f"while {len(held)} other client(s) held transactions, the pooler had no server "
            "connection left for it: clients wait for each other's transactions"
        )
    if shared:
        leaks = shared[0].probe == token
        leak_evidence = (
            f"client B, given backend {p1}, saw the value client A had SET there"
            if leaks
            else f"client B, given backend {p1}, did not see client A's SET: the pooler resets state"
        )
    else:
        leaks = None
        leak_evidence = "no other client was given the backend client A had SET a value on"
    return Topology("transaction_pooler", evidence, leaks, leak_evidence)


def _reused(topo: Topology, p1: int, seen: Seen, token: str) -> None:
    topo.kind = "session_pooler"
    topo.evidence.append(
        f"after that client disconnected, a new client was given its backend {p1}: "
        f"a pooler keeps server connections and hands them to the next client"
    )
    topo.resets_between_clients = seen.probe != token
    topo.leaks = not topo.resets_between_clients
    if topo.leaks:
        topo.leak_evidence = (
            "the next client on that backend saw the previous client's SET: "
            "the pooler does not reset server connections between clients"
        )
    else:
        topo.leak_evidence = (
            "the next client on that backend did not see the previous client's SET: "
            "the pooler resets server connections between clients"
        )


async def _after_disconnect(
    target: Target, p1: int, token: str, topo: Topology, wait: float, max_clients: int = 16
) -> bool:
    """Client A has left: is its backend reused, kept, or gone? True if it may still hold the SET.

    New clients connect one after another and each *stays* connected (holding
    a transaction), so a pooler must give every one of them a server
    connection nobody else holds: it cannot hand the same idle one out again
    and again. A session pooler that keeps A's backend therefore hands it to
    one of them, whichever order its server connections came back in (they
    come back after the pooler's reset query, so that order depends on
    scheduling: pgbouncer reuses the last one back first). After each new
    client, A's backend is looked up: gone means nothing pooled it (direct).

    Ends when a client is given A's backend (session pooler), when A's
    backend is gone (direct), or, with A's backend still alive, when the
    pooler has no server connection left for another client (``wait``) or
    ``max_clients`` are connected and the step's timeout has passed
    (a pooler keeps it, without handing it out).
    """
    deadline = time.monotonic() + target.timeout
    holders = Holders(target, wait)
    try:
        while True:
            if len(holders.conns) < max_clients and not holders.exhausted:
                seen = await holders.add()
                if seen is not None and seen.pid == p1:
                    _reused(topo, p1, seen, token)
                    if topo.leaks:
                        # This client owns the backend now (session pooling): tidy
                        # up; the holders' COMMIT makes the RESET stick.
                        await holders.conns[-1].execute(f"RESET {PROBE_SETTING}")
                    return False
            if holders.conns and not await _backend_alive(holders.conns[0], p1):
                topo.kind = "direct"
                topo.evidence.append(
                    f"backend {p1} ended when its client disconnected: every client has its own "
                    f"backend, nothing pools server connections"
                )
                topo.leaks = False
                topo.leak_evidence = "each client connection has its own backend"
                return False
            out_of_clients = holders.exhausted or len(holders.conns) >= max_clients
            if out_of_clients and (holders.exhausted or time.monotonic() >= deadline):
                break
            if out_of_clients:
                # Direct PostgreSQL: a backend can take a moment to exit after its
                # client has gone. Bounded by the step's timeout.
                await asyncio.sleep(0.02)
    finally:
        await holders.release()
    topo.kind = "session_pooler"
    topo.evidence.append(
        f"backend {p1} stayed connected after its client disconnected, and "
        f"{len(holders.seen)} new client(s) were not given it: a pooler keeps it"
    )
    topo.leak_evidence += "; whether the pooler resets state between clients was not observed"
    return True


async def probe_topology(target: Target, token: str, wait: float) -> tuple[Topology, set[int]]:
    """Classify the endpoint. Returns the topology and the backends that may hold the probe setting."""
    a = await target.connect()
    holders = Holders(target, wait)
    closed = False
    try:
        row = await a.fetchrow(_SET, PROBE_SETTING, token)
        p1 = int(row["pid"])
        hint = _port_hint(target, row["port"])
        for _ in range(2):
            if await holders.add() is None:
                break
        mine: list[Seen] = []
        waited = False
        for _ in range(3):
            seen, queued = await holders.run_while_held(read_backend(a))
            mine.append(seen)
            waited = waited or queued
        held = list(holders.seen)
        await holders.release()
        moved = [s for s in mine if s.pid != p1]
        # Same backend, SET gone: a pooler that resets after every transaction.
        wiped = [s for s in mine if s.pid == p1 and s.probe != token]
        if moved or wiped or any(s.pid == p1 for s in held):
            topo = await _transaction_pooler(p1, token, held, moved, waited)
            if wiped:
                topo.evidence.append(
                    f"on backend {p1} the client's session-level SET was gone in its next "
                    "transaction: the pooler resets server connections after each transaction"
                )
            topo.evidence += hint
            return topo, {p1}
        topo = Topology(
            "direct",
            [
                f"one client's {len(mine) + 1} transactions all ran on backend {p1} and kept its "
                f"session-level SET while {len(held)} other clients held transactions on backends "
                f"{_pids(held) or '(none)'}"
            ],
            None,
            "while a client is connected, no other client is given its backend",
        )
        if holders.exhausted:
            topo.evidence.append(
                "a further client queued for a server connection instead of getting a backend: "
                "a pooler with a full pool"
            )
        await a.close()
        closed = True
        dirty = await _after_disconnect(target, p1, token, topo, wait)
        if holders.exhausted and topo.kind == "direct":
            topo.kind = "session_pooler"
        topo.evidence += hint
        return topo, {p1} if dirty else set()
    finally:
        await holders.release()
        if not closed:
            try:
                await asyncio.wait_for(a.close(), target.timeout)
            except Exception:
                a.terminate()
