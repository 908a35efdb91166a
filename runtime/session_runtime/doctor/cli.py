"""``session-runtime doctor [URL]``: probe the endpoint, print the engine configuration proven safe there.

Exit codes: 0 a safe configuration was found (and ``--check-engine``'s engine
passes); 1 a problem: no configuration works there (e.g. asyncpg too old
behind a transaction pooler), or the checked engine fails; 2 the doctor could
not do its job: bad URL, cannot connect (within ``--timeout``), bad
``--check-engine``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from .check_engine import load_engine, resolve_engine
from .model import Report
from .render import as_json, as_text
from .run import diagnose
from .target import DoctorError, Target

__all__ = ["main"]

PROG = "session-runtime"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Tools for session_runtime: SQLAlchemy asyncio behind poolers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor = commands.add_parser(
        "doctor",
        help="probe a database endpoint and print the engine configuration proven safe there",
        description=(
            "Probe a PostgreSQL endpoint (direct, session-mode or transaction-mode pooler), "
            "prepared statements, startup parameters, session-state leaks and latency; print "
            "the engine configuration proven safe there. Read-only; nothing is left behind."
        ),
        epilog="exit codes: 0 safe configuration found, 1 a problem no configuration fixes "
        "(or --check-engine fails), 2 cannot connect / usage error",
    )
    doctor.add_argument("url", nargs="?", help="database URL (default: $DATABASE_URL)")
    doctor.add_argument("--format", choices=("text", "json"), default="text")
    doctor.add_argument(
        "--check-engine",
        metavar="MODULE:ATTRIBUTE",
        help="also run the probes' burst through your engine (or a function returning one)",
    )
    doctor.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="bound for each connect and probe step (default 5)",
    )
    return parser


def _positive_seconds(text: str) -> float:
    # A type, not a check after parsing: argparse then reports it with the
    # doctor's usage, not the top-level one.
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


async def _doctor(
    url: str | None, check_spec: str | None, check_obj: Any, timeout: float
) -> tuple[Report, Target]:
    check = None
    if check_spec is not None:
        engine = await resolve_engine(check_spec, check_obj)
        check = (check_spec, engine)
        if url is None and not os.environ.get("DATABASE_URL"):
            # No URL given: probe the endpoint the engine talks to.
            url = engine.url.render_as_string(hide_password=False)
    try:
        target = Target.from_url(url, timeout)
    except DoctorError:
        if check is not None:
            await check[1].dispose()
        raise
    return await diagnose(target, check=check), target


def _fail(message: str, fmt: str) -> int:
    line = " ".join(message.split())
    print(f"{PROG} doctor: {line}", file=sys.stderr)
    if fmt == "json":
        print(as_json(Report(url="", exit_code=2, verdict=line, error=line), None), end="")
    return 2


def doctor(url: str | None, *, fmt: str, check_spec: str | None, timeout: float) -> int:
    try:
        check_obj = load_engine(check_spec) if check_spec else None
        report, target = asyncio.run(_doctor(url, check_spec, check_obj, timeout))
    except DoctorError as exc:
        return _fail(str(exc), fmt)
    if report.exit_code == 2 and fmt == "text":
        return _fail(report.error or report.verdict, fmt)
    if report.error:
        print(f"{PROG} doctor: {' '.join(report.error.split())}", file=sys.stderr)
    render = as_json if fmt == "json" else as_text
    print(target.scrub(render(report, target)), end="")
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "doctor":
        parser.print_help(sys.stderr)
        return 2
    return doctor(args.url, fmt=args.format, check_spec=args.check_engine, timeout=args.timeout)
