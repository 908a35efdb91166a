"""The cheap tests rules make before searching the whole file give the answers the
search would: SL105's text test for ``.configure(expire_on_commit=...)``, SL103's
import test for ``asyncio.run(main())``, SL301's statement-only search for session
blocks, and the per-file cache of qualified names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from session_lint.analyzer import analyze
from session_lint.core.walker import children
from session_lint.project.config import Config
from session_lint.semantics.transactions import blocks_and_withs, walk_with_ancestors
from tests.lint.fixture_files import ROOT

CONFIG = Config(root=".")


def codes(source: str, code: str, *, encoding: str = "utf-8") -> list[str]:
    """``line:code`` of the findings of one rule on ``source``."""
    result = analyze(source.encode(encoding), "app/services/x.py", CONFIG)
    assert not result.errors
    assert all(f.code != "SL000" for f in result.findings)
    return [f"{f.line}:{f.code}" for f in result.findings if f.code == code]


FACTORY = textwrap.dedent(
    """\
    # -*- coding: {encoding} -*-
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from app.db import engine

    Factory = async_sessionmaker(engine)
    """
)


# latin-1: the text test answers; cp1252: the bytes are not trusted, the tree is searched.
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252"])
def test_sl105_configured_later_is_found_in_any_encoding(encoding: str) -> None:
    head = FACTORY.format(encoding=encoding)
    assert codes(head, "SL105", encoding=encoding) == ["6:SL105"]
    later = head + "Factory.configure(expire_on_commit=False)\n"
    assert codes(later, "SL105", encoding=encoding) == []


def test_sl105_needs_both_names_in_the_text() -> None:
    head = FACTORY.format(encoding="utf-8")
    assert codes(head + "Factory.configure(bind=engine)\n", "SL105") == ["6:SL105"]
    comment = "# expire_on_commit is configured elsewhere\n"
    assert codes(head + comment, "SL105") == ["6:SL105"]


ENGINE_IN_FUNCTION = """\
    {imports}
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine


    async def seed(url):
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))


    {run}
    """


@pytest.mark.parametrize(
    ("imports", "run", "expected"),
    [
        ("import asyncio", "asyncio.run(seed('x'))", []),
        ("import asyncio as aio", "aio.run(seed('x'))", []),
        ("from asyncio import run", "run(seed('x'))", []),
        ("from anyio import run as go", "go(seed, 'x')", []),
        ("import os", "print(seed)", ["7:SL103"]),
        # Resolved in the module scope: an import inside a function does not count.
        (
            "import os",
            "def start():\n        import asyncio\n        asyncio.run(seed('x'))",
            ["7:SL103"],
        ),
        # Not an import: a local ``run`` is not asyncio's.
        ("import os", "def run(c): ...\n    run(seed('x'))", ["7:SL103"]),
    ],
)
def test_sl103_entry_functions(imports: str, run: str, expected: list[str]) -> None:
    source = textwrap.dedent(ENGINE_IN_FUNCTION.format(imports=imports, run=run))
    assert codes(source, "SL103") == expected


FILES = sorted((ROOT / "fixtures").rglob("*.py"))


@pytest.mark.parametrize("file", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_blocks_and_withs_are_what_the_full_walk_finds(file: Path) -> None:
    module = cst.parse_module(file.read_bytes())
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        stack.extend(children(node))
        if isinstance(node, cst.FunctionDef) and isinstance(node.body, cst.IndentedBlock):
            walked = [
                n
                for n, _ in walk_with_ancestors([node.body])
                if isinstance(n, (cst.IndentedBlock, cst.With))
            ]
            assert list(blocks_and_withs(node.body)) == walked
