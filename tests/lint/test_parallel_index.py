"""The project index read by several processes is the index read by one
(session_lint/project/parallel.py), and what the faster paths skip cannot change a
finding: a rule whose tokens are not in the file is not walked, and a file the
index parsed is not parsed again to show it compiles."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from session_lint.analyzer import analyze, plan
from session_lint.project.config import Config, load_config
from session_lint.project.effects import learn_effects
from session_lint.project.index import build_index
from session_lint.project.parallel import MIN_ITEMS, in_background, map_forked
from session_lint.rules import ALL_RULES, RULES_BY_CODE
from session_lint.syntax import digest, parse_ast, parsed_digest

_SERVICE = '''
import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import async_session


async def fetch_profile_{i}(user_id: int) -> dict:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"https://example.test/{{user_id}}")).json()


async def save_{i}(session: AsyncSession, row: object) -> None:
    session.add(row)
    await session.commit()


async def refresh_{i}(user_id: int) -> None:
    async with async_session() as session:
        await session.execute("SELECT 1")
        await fetch_profile_{i}(user_id)
'''
_DB = """
from asyncio import current_task

from sqlalchemy.ext.asyncio import async_scoped_session, async_sessionmaker, create_async_engine

engine = create_async_engine("postgresql+asyncpg://app@db/app")
async_session = async_sessionmaker(engine, expire_on_commit=False)
scoped = async_scoped_session(async_session, scopefunc=current_task)


async def close_scoped() -> None:
    await scoped.remove()
"""


def _project(root: Path, modules: int) -> None:
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "db.py").write_text(textwrap.dedent(_DB))
    for i in range(modules):
        (root / "app" / f"service_{i}.py").write_text(_SERVICE.format(i=i))


def test_map_forked_keeps_the_order_and_uses_other_processes() -> None:
    items = list(range(MIN_ITEMS * 2))
    results = map_forked(lambda n: (n * n, os.getpid()), items, 2)
    assert [square for square, _ in results] == [n * n for n in items]
    if sys.platform.startswith("linux"):
        assert os.getpid() not in {pid for _, pid in results}


def test_map_forked_runs_here_below_the_threshold_or_with_one_job() -> None:
    ran: list[str] = []
    few = map_forked(lambda n: os.getpid(), list(range(MIN_ITEMS - 1)), 2, lambda: ran.append("a"))
    one = map_forked(lambda n: os.getpid(), list(range(MIN_ITEMS * 2)), 1, lambda: ran.append("b"))
    assert set(few) == set(one) == {os.getpid()}
    assert ran == ["a", "b"]  # ``meanwhile`` runs exactly once either way


def test_in_background_gives_the_result_from_another_process() -> None:
    result = in_background(lambda: (os.getpid(), [1, 2]), 2)
    pid, value = result()
    assert value == [1, 2]
    if sys.platform.startswith("linux"):
        assert pid != os.getpid()


def test_in_background_with_one_job_runs_here_when_asked() -> None:
    ran: list[int] = []
    result = in_background(lambda: ran.append(os.getpid()) or "done", 1)
    assert ran == []
    assert result() == "done"
    assert ran == [os.getpid()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
@pytest.mark.parametrize("how", ["raises", "dies"])
def test_a_background_task_that_fails_is_done_again_here(how: str) -> None:
    parent = os.getpid()

    def task() -> int:
        if os.getpid() != parent:  # only in the forked process
            if how == "dies":
                os._exit(3)
            raise RuntimeError("fails in the child")
        return 42

    assert in_background(task, 2)() == 42


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
def test_a_background_task_whose_parent_stopped_ends_in_silence() -> None:
    # The parent exits at once (an error, Ctrl-C); the child's result, larger than
    # a pipe holds, has no reader: the child must neither hang nor print a traceback.
    script = (
        "import os, time\n"
        "from session_lint.project.parallel import in_background\n"
        "in_background(lambda: time.sleep(0.3) or b'x' * 1_000_000, 2)\n"
        "os._exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )  # waits for the child too: it holds the same stderr
    assert (proc.returncode, proc.stderr) == (0, "")


def test_an_index_read_by_two_processes_equals_one_read_by_one(tmp_path: Path) -> None:
    _project(tmp_path, MIN_ITEMS + 10)
    one = build_index(str(tmp_path), use_cache=False, jobs=1)
    two = build_index(str(tmp_path), use_cache=False, jobs=2)
    assert one.fingerprint() == two.fingerprint()
    # The index has something to compare: every module's slow and committing
    # functions, and the pooled engine they reach.
    effects = {name: (slow, commits) for name, slow, commits, *_ in two.effects}
    assert effects["app.service_3.fetch_profile_3"][0]
    assert effects["app.service_70.save_70"][1]
    assert two.pooled_engines == ("app.db.engine",)
    assert two.scoped_removals == ("scoped",)  # learned beside the rest


def test_effects_read_by_two_processes_keep_every_file(tmp_path: Path) -> None:
    _project(tmp_path, MIN_ITEMS + 1)
    files = sorted(
        (p.relative_to(tmp_path).as_posix(), p) for p in (tmp_path / "app").glob("*.py")
    )
    one = learn_effects(files, {}, ("httpx.*",), jobs=1)
    two = learn_effects(files, {}, ("httpx.*",), jobs=2)
    assert one == two
    assert len([n for n in two.functions if n.endswith(".refresh_64")]) == 1


def test_a_rule_whose_tokens_are_missing_is_not_walked() -> None:
    source = b"from sqlalchemy.orm import Session\n\ndef f(session: Session) -> None:\n    session.add(1)\n"
    config = Config(root=".")
    walkers = {r.code for r in plan(source, "app/x.py", config, ALL_RULES).walkers}
    assert "SL404" in walkers  # a session is named
    assert "SL408" not in walkers  # nothing runs an event loop
    assert "SL503" not in walkers  # no SQL text
    unfiltered = plan(source, "app/x.py", config, ALL_RULES, use_prefilter=False)
    assert RULES_BY_CODE["SL408"] in unfiltered.walkers


@pytest.mark.parametrize(
    "text",
    ['await session.execute(text("SET search_path TO app"))',
     'await session.execute(text("\\nSET search_path TO app"))',
     'await session.execute(text("set" " statement_timeout = 0"))',
     'await session.execute(text("SELECT pg_advisory_lock(1)"))',
     'await session.execute(text("select SET_CONFIG(\'a\', \'b\', false)"))'],
)  # fmt: skip
def test_sql_that_sets_a_session_level_value_is_walked_by_sl503(text: str) -> None:
    source = (
        "from sqlalchemy import text\n\n"
        f"async def f(session) -> None:\n    {text}\n"
    ).encode()
    config = Config(root=".")
    planned = plan(source, "app/x.py", config, ALL_RULES)
    assert RULES_BY_CODE["SL503"] in planned.walkers
    assert [f.code for f in analyze(source, "app/x.py", config).findings] == ["SL503"]


def test_a_file_the_index_parsed_is_known_to_compile(tmp_path: Path) -> None:
    good = b"def f():\n    return 1\n# a unique comment for this test: 81f0c2\n"
    bad = b"def f(:\n    return 1\n"
    assert parsed_digest(good) is None
    assert parse_ast(good, "good.py") is not None
    assert parsed_digest(good) == digest(good)
    assert parse_ast(bad, "bad.py") is None
    assert parsed_digest(bad) is None
    # A broken file the index could not parse is still reported, even with no rule
    # that reads it.
    (tmp_path / "broken.py").write_bytes(bad)
    config = load_config([str(tmp_path)])
    findings = analyze(bad, str(tmp_path / "broken.py"), config).findings
    assert [f.code for f in findings] == ["SL000"]
