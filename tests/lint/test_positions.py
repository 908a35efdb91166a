"""Our position pass gives libcst's ``PositionProvider`` answers, node for node."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from session_lint.positions import node_positions
from tests.lint.fixture_files import ROOT

FILES = sorted((ROOT / "fixtures").rglob("*.py"))


@pytest.mark.parametrize("file", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_positions_equal_position_provider(file: Path) -> None:
    module = cst.parse_module(file.read_bytes())
    ours = node_positions(module)
    reference = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    assert len(ours) == len(reference)
    for node, where in reference.items():
        assert ours[node] == where, module.code_for_node(node)


def test_positions_handle_crlf_and_continuations() -> None:
    source = b"x = (1 +\r\n     2)\r\nif x:\\\r\n    pass\r\n"
    module = cst.parse_module(source)
    reference = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    assert dict(node_positions(module)) == dict(reference)
