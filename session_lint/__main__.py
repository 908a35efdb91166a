"""``python -m session_lint``: the same as the ``session-lint`` command."""

from __future__ import annotations

from session_lint.cli.main import entry

if __name__ == "__main__":
    entry()
