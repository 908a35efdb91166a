"""``session-runtime doctor``: measure a database endpoint instead of guessing.

Probes, each bounded by a timeout and read-only: what sits in front of
PostgreSQL (direct, session-mode or transaction-mode pooler, decided from
behaviour), whether asyncpg's prepared statements work there with its
defaults and with ``statement_cache_size=0``, which startup parameters the
endpoint accepts, whether a session-level ``SET`` leaks between clients, and
the latency of a connect and of a trivial transaction. Then it prints the
engine configuration proven safe there, and verifies it with a burst.

Entry points: the ``session-runtime`` console script and
``python -m session_runtime doctor``; both call :func:`cli.main`.
"""

from __future__ import annotations

from .model import Report
from .run import diagnose
from .target import DoctorError, Target

__all__ = ["DoctorError", "Report", "Target", "diagnose"]
