from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-fixed",
        action="store_true",
        help="rewrite fixtures/rules/*.fixed.py from the current fix output",
    )
