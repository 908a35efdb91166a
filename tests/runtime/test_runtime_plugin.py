"""The pytest plugin's own behaviour: binary discovery, skip vs. fail, the admin console."""

from __future__ import annotations

import pytest
from session_runtime import testing
from session_runtime.testing import BinaryMissingError, PgBouncer, find_binary


def test_missing_binary_skips_with_one_line_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_RUNTIME_REQUIRE_DB", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-binary not found"):
        testing._require("no-such-binary")


def test_missing_binary_fails_when_the_database_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESSION_RUNTIME_REQUIRE_DB", "1")
    with pytest.raises(pytest.fail.Exception, match="SESSION_RUNTIME_REQUIRE_DB=1"):
        testing._require("no-such-binary")


def test_find_binary_reports_what_to_install() -> None:
    with pytest.raises(BinaryMissingError, match=r"install postgresql"):
        find_binary("no-such-binary")


def test_pgbouncer_is_in_transaction_mode_with_a_small_pool(
    session_runtime_pgbouncer: PgBouncer,
) -> None:
    config = {row["key"]: row["value"] for row in session_runtime_pgbouncer.admin("SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert int(config["default_pool_size"]) <= 3
    assert config["listen_addr"] == "127.0.0.1"
