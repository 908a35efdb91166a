"""A run whose every file is a cache hit never imports libcst (issue: speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE = b"""from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as session:
        await session.commit()
"""

PROBE = """
import sys
from session_lint.cli.main import main
code = main(sys.argv[1:])
print("libcst imported:", any(m == "libcst" or m.startswith("libcst.") for m in sys.modules))
raise SystemExit(code)
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_warm_run_does_not_import_libcst(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.session-lint]\n", encoding="utf-8")
    (tmp_path / "app.py").write_bytes(SAMPLE)
    (tmp_path / "other.py").write_bytes(b"print('hello')\n")
    cold = _run(tmp_path, "--format", "json", ".")
    assert cold.returncode == 1, cold.stderr
    assert "libcst imported: True" in cold.stdout
    warm = _run(tmp_path, "--format", "json", ".")
    assert warm.returncode == 1, warm.stderr
    assert "libcst imported: False" in warm.stdout
    # Same findings from the cache as from the analysis.
    assert warm.stdout == cold.stdout.replace("libcst imported: True", "libcst imported: False")
