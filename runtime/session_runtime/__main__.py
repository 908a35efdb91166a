"""``python -m session_runtime doctor [URL]``: the same as the ``session-runtime`` script."""

from __future__ import annotations

from .doctor.cli import main

raise SystemExit(main())
