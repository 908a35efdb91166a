"""A command-line run collects less often and freezes its index
(session_lint/cli/collection.py), and leaves the process as it found it: the tests,
and any tool calling ``main()``, run many times in one process."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from session_lint.cli import main as cli_main
from session_lint.cli import runner
from session_lint.cli.collection import batch_collection


def test_a_run_collects_less_and_puts_the_collector_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app.py").write_text(
        "from sqlalchemy.orm import Session\n\ns = Session()\n", encoding="utf-8"
    )
    seen: list[tuple[tuple[int, int, int], int]] = []
    real_run = runner.run

    def recording_run(*args: object, **kwargs: object) -> runner.RunResult:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cli_main, "run", recording_run)
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    code = cli_main.main(["--no-cache", "--exit-zero", "-q", str(tmp_path)])
    assert code == 0
    assert len(seen) == 1
    threshold, frozen = seen[0]
    assert threshold[0] > before[0]  # fewer collections of the youngest generation
    assert frozen > 0  # the config and the index, out of the collector's walks
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_freeze_made_before_is_kept() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with batch_collection():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
