"""What a project can import (``session_lint.project.dependencies``), and fixes that import
only that: every dependency file format, version caps, the project's own modules,
broken files, and the rules whose fixes add imports."""

from __future__ import annotations

import os
import textwrap
from dataclasses import fields, replace
from pathlib import Path

import pytest

from session_lint.analyzer import analyze
from session_lint.fixes.apply import fix_source
from session_lint.project.config import Config
from session_lint.project.dependencies import (
    asyncpg_too_old_for_pooler,
    can_import_module,
    capped_below,
    declared_dependencies,
    dependency_facts,
    describe_cap,
    implied_by_import,
    local_modules,
    normalize,
    parse_requirement,
    poetry_cap,
    version_key,
)
from session_lint.project.facts import ProjectIndex
from session_lint.rules import RULES_BY_CODE
from tests.lint.fixture_files import RULE_FIXTURES, index_from_requirements, load


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def caps_of(root: Path) -> dict[str, str]:
    return dict(declared_dependencies(root)[1])


# -- names and requirement strings ---------------------------------------------------
@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("SQLAlchemy", "sqlalchemy"),
        ("session_runtime", "session-runtime"),
        ("Foo.Bar__baz", "foo-bar-baz"),
        ("zope.interface", "zope-interface"),
    ],
)
def test_normalize_is_pep_503(name: str, normalised: str) -> None:
    assert normalize(name) == normalised


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("asyncpg", ("asyncpg", None)),
        ("asyncpg>=0.27", ("asyncpg", None)),
        ("asyncpg==0.29.0", ("asyncpg", "0.29.0")),
        ("asyncpg === 0.29.0", ("asyncpg", "0.29.0")),
        ("asyncpg<=0.31", ("asyncpg", "0.31")),
        ("asyncpg<0.30", ("asyncpg", "<0.30")),
        ("asyncpg>=0.27,<0.30", ("asyncpg", "<0.30")),
        ("asyncpg >= 0.27, < 0.31, != 0.28.0", ("asyncpg", "<0.31")),
        ("asyncpg~=0.29.0", ("asyncpg", "<0.30")),
        ("asyncpg~=0.29", ("asyncpg", "<1")),
        ("asyncpg==0.29.*", ("asyncpg", "<0.30")),
        ("asyncpg==0.29.0+local", ("asyncpg", "0.29.0")),
        ("asyncpg (<0.30)", ("asyncpg", "<0.30")),
        ("asyncpg!=0.29.0", ("asyncpg", None)),
        ("asyncpg>0.25", ("asyncpg", None)),
        ("SQLAlchemy[asyncio,mypy]>=2.0,<2.1; python_version >= '3.10'", ("sqlalchemy", "<2.1")),
        ("psycopg[binary] ; sys_platform == 'linux'", ("psycopg", None)),
        ("Session_Runtime", ("session-runtime", None)),
        ("pkg @ https://example.com/pkg-1.0.tar.gz", ("pkg", None)),
        ("pkg==1.0 --hash=sha256:abcdef", ("pkg", "1.0")),
        ("Install the package", None),
        ("./local/path", None),
        ("", None),
        ("pkg[unclosed", None),
    ],
)
def test_parse_requirement(text: str, expected: tuple[str, str | None] | None) -> None:
    assert parse_requirement(text) == expected


@pytest.mark.parametrize(
    ("constraint", "cap"),
    [
        ("^0.29", "<0.30"),
        ("^0.29.1", "<0.30"),
        ("^1.2.3", "<2"),
        ("^0.0.3", "<0.0.4"),
        ("~0.29", "<0.30"),
        ("~1.2.3", "<1.3"),
        ("~1", "<2"),
        ("~=0.29.0", "<0.30"),
        ("0.29.0", "0.29.0"),
        ("==0.29.0", "0.29.0"),
        ("0.29.*", "<0.30"),
        (">=0.27,<0.30", "<0.30"),
        (">=0.27 <0.30", "<0.30"),
        (">= 0.27", None),
        ("*", None),
        ("^0.29 || ^0.31", "<0.32"),
        ("^0.29 || >=0.32", None),
    ],
)
def test_poetry_constraints(constraint: str, cap: str | None) -> None:
    assert poetry_cap(constraint) == cap


def test_versions_compare_as_pep_440() -> None:
    assert version_key("0.32") == version_key("0.32.0")
    assert version_key("0.32.0rc1") < version_key("0.32.0")  # type: ignore[operator]
    assert version_key("0.32.0.dev1") < version_key("0.32.0")  # type: ignore[operator]
    assert version_key("0.32.0.post1") > version_key("0.32.0")  # type: ignore[operator]
    assert version_key("0.9") < version_key("0.10")  # type: ignore[operator]
    assert version_key("1!0.1") > version_key("2.0")  # type: ignore[operator]
    assert version_key("latest") is None


# -- pyproject.toml ------------------------------------------------------------------
def test_pep_621_dependencies_and_extras(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        """\
        [project]
        name = "app"
        dependencies = ["SQLAlchemy[asyncio]>=2.0", "asyncpg==0.29.0"]
        [project.optional-dependencies]
        server = ["FastAPI>=0.100", "uvicorn[standard]"]
        """,
    )
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg", "fastapi", "sqlalchemy", "uvicorn")
    assert caps == (("asyncpg", "0.29.0"),)
    assert found


def test_a_project_table_without_dependencies_declares_none(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "app"\n')
    assert declared_dependencies(tmp_path) == ((), (), True)


def test_dynamic_dependencies_are_not_a_declaration(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "app"\ndynamic = ["dependencies"]\n')
    assert declared_dependencies(tmp_path) == ((), (), False)


def test_tool_config_alone_declares_nothing(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[tool.session-lint]\nselect = ["SL"]\n')
    assert declared_dependencies(tmp_path) == ((), (), False)


def test_pep_735_dependency_groups(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        """\
        [dependency-groups]
        test = ["pytest>=8", "asyncpg<0.31"]
        dev = [{include-group = "test"}, "ruff"]
        """,
    )
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg", "pytest", "ruff")
    assert caps == (("asyncpg", "<0.31"),)
    assert found


def test_poetry_dependencies_groups_and_dev(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        """\
        [tool.poetry]
        name = "app"
        [tool.poetry.dependencies]
        python = "^3.11"
        SQLAlchemy = {version = "^2.0", extras = ["asyncio"]}
        asyncpg = "^0.29"
        session_runtime = {path = "../runtime", develop = true}
        psycopg = [
            {version = "<3.1", python = "<3.10"},
            {version = "^3.1", python = ">=3.10"},
        ]
        [tool.poetry.group.test.dependencies]
        pytest = "*"
        [tool.poetry.dev-dependencies]
        black = "23.1.0"
        """,
    )
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg", "black", "psycopg", "pytest", "session-runtime", "sqlalchemy")
    assert dict(caps) == {
        "asyncpg": "<0.30",
        "black": "23.1.0",
        "psycopg": "<4",  # the highest of the per-environment constraints
        "sqlalchemy": "<3",
    }
    assert found


def test_uv_and_pdm_dev_dependencies(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pyproject.toml",
        """\
        [tool.uv]
        dev-dependencies = ["pytest"]
        [tool.pdm.dev-dependencies]
        lint = ["ruff"]
        """,
    )
    assert declared_dependencies(tmp_path) == (("pytest", "ruff"), (), True)


# -- setup.cfg, Pipfile, requirements -----------------------------------------------
def test_setup_cfg(tmp_path: Path) -> None:
    write(
        tmp_path,
        "setup.cfg",
        """\
        [metadata]
        name = app
        [options]
        install_requires =
            sqlalchemy[asyncio]>=2.0
            asyncpg~=0.30.0  # pinned for the pooler
            tomli; python_version < "3.11"
        [options.extras_require]
        api = fastapi
        test =
            pytest
        """,
    )
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg", "fastapi", "pytest", "sqlalchemy", "tomli")
    assert caps == (("asyncpg", "<0.31"),)
    assert found


def test_setup_cfg_without_options_declares_nothing(tmp_path: Path) -> None:
    write(tmp_path, "setup.cfg", "[flake8]\nmax-line-length = 100\n")
    assert declared_dependencies(tmp_path) == ((), (), False)


def test_pipfile(tmp_path: Path) -> None:
    write(
        tmp_path,
        "Pipfile",
        """\
        [packages]
        sqlalchemy = "*"
        asyncpg = {version = "==0.28.0"}
        [dev-packages]
        pytest = ">=8"
        """,
    )
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg", "pytest", "sqlalchemy")
    assert caps == (("asyncpg", "0.28.0"),)
    assert found


def test_requirements_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        "requirements.txt",
        """\
        # production
        SQLAlchemy[asyncio]==2.0.36 \\
            --hash=sha256:aaaa
        asyncpg<0.31  # the pooler
        -r requirements/base.txt
        --requirement=extra.txt
        -rshort.txt
        -e ./libs/shared
        -e git+https://github.com/org/pkg.git#egg=pkg
        git+https://github.com/org/other.git
        https://example.com/wheel-1.0-py3-none-any.whl
        ./local/dir
        --index-url https://pypi.example.com/simple
        -c constraints.txt
        named @ https://example.com/named-1.0.tar.gz
        """,
    )
    write(tmp_path, "requirements/base.txt", "fastapi\n")
    write(tmp_path, "extra.txt", "httpx\n-r deeper.txt\n")
    write(tmp_path, "deeper.txt", "never-followed\n")  # two levels down
    write(tmp_path, "short.txt", "anyio\n")
    write(tmp_path, "constraints.txt", "constrained==1.0\n")
    write(tmp_path, "requirements-dev.txt", "pytest\n")
    write(tmp_path, "requirements/test.txt", "hypothesis\n")
    write(tmp_path, "dev-requirements.md", "not-a-requirement\n")
    names, caps, found = declared_dependencies(tmp_path)
    assert names == (
        "anyio",
        "asyncpg",
        "fastapi",
        "httpx",
        "hypothesis",
        "named",
        "pytest",
        "sqlalchemy",
    )
    assert dict(caps) == {"asyncpg": "<0.31", "sqlalchemy": "2.0.36"}
    assert found


def test_requirements_include_of_a_missing_file_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "requirements.txt", "-r missing.txt\n-r requirements.txt\nasyncpg\n")
    assert declared_dependencies(tmp_path) == (("asyncpg",), (), True)


# -- locks ---------------------------------------------------------------------------
UV_LOCK = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "asyncpg" },
]

[package.metadata]
requires-dist = [{ name = "asyncpg", specifier = ">=0.27" }]

[[package]]
name = "asyncpg"
version = "0.30.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.example/asyncpg-0.30.0.tar.gz", hash = "sha256:aa", size = 1 }

[[package]]
name = "SQLAlchemy"
version = "2.0.36"
source = { registry = "https://pypi.org/simple" }
"""

POETRY_LOCK = """\
# This file is automatically @generated by Poetry 1.8.3 and should not be changed by hand.

[[package]]
name = "asyncpg"
version = "0.28.0"
description = "An asyncio PostgreSQL driver"
optional = false
python-versions = ">=3.7.0"
files = [
    {file = "asyncpg-0.28.0.tar.gz", hash = "sha256:aa"},
]

[package.extras]
name = ["not-a-package"]
docs = ["Sphinx (>=5.3.0,<5.4.0)"]

[[package]]
name = "greenlet"
version = "3.0.3"
description = "Lightweight in-process concurrent programming"
optional = false
python-versions = ">=3.7"

[metadata]
lock-version = "2.0"
content-hash = "abc"
"""


def test_uv_lock_names_and_exact_versions(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "app"\ndependencies = ["asyncpg>=0.27"]\n')
    write(tmp_path, "uv.lock", UV_LOCK)
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("app", "asyncpg", "sqlalchemy")
    assert dict(caps) == {"app": "0.1.0", "asyncpg": "0.30.0", "sqlalchemy": "2.0.36"}
    assert found


def test_poetry_lock_names_and_exact_versions(tmp_path: Path) -> None:
    write(tmp_path, "poetry.lock", POETRY_LOCK)
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg", "greenlet")
    assert dict(caps) == {"asyncpg": "0.28.0", "greenlet": "3.0.3"}
    assert found


def test_the_lowest_cap_wins(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "a"\ndependencies = ["asyncpg<0.31"]\n')
    write(tmp_path, "requirements.txt", "asyncpg<=0.30\n")
    write(tmp_path, "poetry.lock", POETRY_LOCK)  # asyncpg 0.28.0
    assert caps_of(tmp_path)["asyncpg"] == "0.28.0"
    # "below 0.30" is lower than "at most 0.30".
    write(tmp_path, "poetry.lock", "")
    write(tmp_path, "requirements-old.txt", "asyncpg<0.30\n")
    assert caps_of(tmp_path)["asyncpg"] == "<0.30"


# -- broken files --------------------------------------------------------------------
def test_broken_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project\nname = "broken"\n')
    write(tmp_path, "setup.cfg", "install_requires = no section header\n")
    write(tmp_path, "Pipfile", "[packages\n")
    (tmp_path / "uv.lock").write_bytes(b'[[package]]\nname = "\xff\xfe"\n')
    write(tmp_path, "poetry.lock", '[[package]]\nversion = "1.0"\n')  # no name
    (tmp_path / "requirements.txt").mkdir()  # a directory, not a file
    os.mkfifo(tmp_path / "requirements-dev.txt")  # reading it would block
    write(tmp_path, "requirements-prod.txt", "asyncpg==not.a.version\n")
    names, caps, found = declared_dependencies(tmp_path)
    assert names == ("asyncpg",)
    assert caps == ()
    assert found  # requirements-prod.txt was read


def test_invalid_utf8_and_deep_toml_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[project]\nname = "\xff"\n')
    assert declared_dependencies(tmp_path) == ((), (), False)
    write(tmp_path, "pyproject.toml", "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert declared_dependencies(tmp_path) == ((), (), False)


def test_no_dependency_file_at_all(tmp_path: Path) -> None:
    write(tmp_path, "app.py", "import asyncpg\n")
    assert declared_dependencies(tmp_path) == ((), (), False)


def test_a_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert declared_dependencies(missing) == ((), (), False)
    assert local_modules(missing) == ()


# -- the project's own modules -------------------------------------------------------
def test_local_modules(tmp_path: Path) -> None:
    write(tmp_path, "app/__init__.py", "")
    write(tmp_path, "manage.py", "")
    write(tmp_path, "src/service/__init__.py", "")
    write(tmp_path, "src/tool.py", "")
    write(tmp_path, "scripts/run.py", "")  # a namespace package: .py files directly
    write(tmp_path, "company/billing/api.py", "")  # a namespace package: one level below
    write(tmp_path, "deep/a/b/c.py", "")  # two levels below: not looked for
    write(tmp_path, "assets/logo.txt", "")  # no Python
    write(tmp_path, "my-tool/main.py", "")  # not an identifier: not importable
    write(tmp_path, "not a module.py", "")
    for skipped in (".venv", "venv", "node_modules", ".git", "build", "dist", ".hidden"):
        write(tmp_path, f"{skipped}/__init__.py", "")
    write(tmp_path, "site-packages/__init__.py", "")
    write(tmp_path, "app.egg-info/__init__.py", "")
    assert local_modules(tmp_path) == (
        "app",
        "company",
        "manage",
        "scripts",
        "service",
        "src",
        "tool",
    )


# -- can a fix import it? ------------------------------------------------------------
def test_can_import_module() -> None:
    index = ProjectIndex(
        local_modules=("app",),
        dependencies=("my-lib", "sqlmodel", "session-runtime"),
        dependencies_known=True,
    )
    assert can_import_module(index, "app.db.session")
    assert can_import_module(index, "asyncio")  # stdlib
    assert can_import_module(index, "contextlib")
    assert can_import_module(index, "session_runtime")
    assert can_import_module(index, "my_lib.sub")  # my-lib, normalised
    assert can_import_module(index, "sqlalchemy.ext.asyncio")  # SQLModel installs it
    assert can_import_module(index, "asyncpg")  # session-runtime installs it
    assert not can_import_module(index, "fastapi")
    assert not can_import_module(index, ".db")  # relative: not a project question
    assert not can_import_module(index_from_requirements(["asyncpg"]), "session_runtime")
    assert not can_import_module(index_from_requirements(["sqlalchemy"]), "sqlmodel")
    assert not can_import_module(ProjectIndex(), "session_runtime")
    assert not can_import_module(ProjectIndex(dependencies_known=True), "sqlalchemy")


@pytest.mark.parametrize(
    ("requirement", "below_032"),
    [
        ("asyncpg==0.29.0", True),
        ("asyncpg<0.32", True),
        ("asyncpg<=0.31.9", True),
        ("asyncpg~=0.30.0", True),
        ("asyncpg==0.32.0rc1", True),
        ("asyncpg<=0.32", False),
        ("asyncpg==0.32.0", False),
        ("asyncpg<0.32.1", False),
        ("asyncpg~=0.29", False),  # below 1.0
        ("asyncpg>=0.27", False),
        ("asyncpg", False),
        ("psycopg<3", False),
    ],
)
def test_capped_below(requirement: str, below_032: bool) -> None:
    index = index_from_requirements([requirement])
    assert capped_below(index, "asyncpg", "0.32") is below_032
    assert asyncpg_too_old_for_pooler(index) is below_032


def test_describe_cap() -> None:
    assert describe_cap("<0.30") == "below 0.30"
    assert describe_cap("0.29.0") == "at most 0.29.0"


def test_dependency_facts_fill_the_index(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "a"\ndependencies = ["asyncpg<0.30"]\n')
    write(tmp_path, "app/__init__.py", "")
    facts = dependency_facts(tmp_path)
    owned = {"local_modules", "dependencies", "version_caps", "dependencies_known"}
    assert set(facts) == owned
    assert owned <= {f.name for f in fields(ProjectIndex)}
    index = ProjectIndex(**facts)
    assert index == ProjectIndex(
        local_modules=("app",),
        dependencies=("asyncpg",),
        version_caps=(("asyncpg", "<0.30"),),
        dependencies_known=True,
    )
    index.fingerprint()  # JSON-serialisable


# -- fixes that fit the project ------------------------------------------------------
SESSION_SOURCE = b"""\
from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as s:
        await s.commit()
"""


def sl101(source: bytes, project: ProjectIndex, **config: str) -> tuple[str, bool]:
    result = analyze(source, "app/handlers.py", Config(project=project, **config))
    [finding] = [f for f in result.findings if f.code == "SL101"]
    return finding.message, finding.fix is not None


def test_sl101_fix_needs_the_factory_to_be_importable() -> None:
    message, fixed = sl101(SESSION_SOURCE, index_from_requirements(["session-runtime"]))
    assert fixed and "session-factory" not in message
    for project in (ProjectIndex(), index_from_requirements(["sqlalchemy", "asyncpg"])):
        message, fixed = sl101(SESSION_SOURCE, project)
        assert not fixed
        assert message.endswith(
            "; `session_runtime` is not a declared dependency: set `session-factory` in "
            "[tool.session-lint] to your project's factory to get a fix"
        )


def test_sl101_fix_to_the_projects_own_factory() -> None:
    project = ProjectIndex(local_modules=("app",), dependencies_known=True)
    message, fixed = sl101(SESSION_SOURCE, project, session_factory="app.db:get_session")
    assert fixed and "is not a declared dependency" not in message
    # A factory in a package that is neither the project's nor declared: no fix.
    message, fixed = sl101(SESSION_SOURCE, project, session_factory="other.db:get_session")
    assert not fixed and "`other` is not a declared dependency" in message


def test_a_file_that_already_imports_the_package_may_get_more_from_it() -> None:
    source = b"from session_runtime import make_engine\n" + SESSION_SOURCE
    _, fixed = sl101(source, ProjectIndex())
    assert fixed
    source = b"import session_runtime.testing\n" + SESSION_SOURCE
    _, fixed = sl101(source, ProjectIndex())
    assert fixed


@pytest.mark.parametrize(
    ("module", "imported", "implied"),
    [
        ("session_runtime", "session_runtime.session.get_session", True),
        ("sqlalchemy", "session_runtime.get_session", True),  # session-runtime installs it
        ("sqlalchemy", "sqlmodel.select", True),
        ("session_runtime", "sqlalchemy.ext.asyncio.AsyncSession", False),
        ("sqlmodel", "sqlalchemy.select", False),
        ("sqlalchemy", ".db.get_session", False),
    ],
)
def test_implied_by_import(module: str, imported: str, implied: bool) -> None:
    assert implied_by_import(module, imported) is implied


def test_sl101_hint_only_where_the_fix_would_apply() -> None:
    source = b"""\
from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    s = AsyncSession(engine)
    try:
        await s.commit()
    finally:
        await s.close()
"""
    message, fixed = sl101(source, ProjectIndex())
    assert not fixed and "is not a declared dependency" not in message


def test_sl102_fix_needs_the_engine_factory_to_be_importable() -> None:
    source = b"""\
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine("postgresql+asyncpg://app@db/app", pool_size=5)
"""
    for project, fixable in (
        (index_from_requirements(["session-runtime"]), True),
        (index_from_requirements(["sqlalchemy"]), False),
    ):
        result = analyze(source, "app/main.py", Config(project=project, select=("SL102",)))
        [finding] = [f for f in result.findings if f.code == "SL102"]
        assert (finding.fix is not None) is fixable
        assert ("set `engine-factory` in [tool.session-lint]" in finding.message) is not fixable


@pytest.mark.parametrize(
    ("header", "project", "fixable"),
    [
        ("from sqlalchemy import select\n", ProjectIndex(), True),  # imports sqlalchemy already
        ("", ProjectIndex(), False),  # no dependency file, no sqlalchemy import
        ("", index_from_requirements(["sqlalchemy>=2"]), True),
        ("", index_from_requirements(["sqlmodel"]), True),  # installs SQLAlchemy
        ("", index_from_requirements(["session-runtime"]), True),
        ("", index_from_requirements(["fastapi"]), False),
        ("import session_runtime\n", ProjectIndex(), True),  # it installs SQLAlchemy
    ],
)
def test_sl501_text_import_needs_sqlalchemy(
    header: str, project: ProjectIndex, fixable: bool
) -> None:
    # The project's own session factory: the file needs no SQLAlchemy import.
    project = replace(
        project,
        local_modules=("app",),
        session_factories=(("app.db.get_session", "async", "none"),),
    )
    source = (
        header
        + "from app.db import get_session\n\n\n"
        + "async def count():\n"
        + "    async with get_session() as session:\n"
        + '        return await session.scalar("SELECT count(*) FROM users")\n'
    ).encode()
    result = analyze(source, "app/q.py", Config(project=project), [RULES_BY_CODE["SL501"]])
    [finding] = result.findings
    assert (finding.fix is not None) is fixable
    assert ("`sqlalchemy` is not a declared dependency" in finding.message) is not fixable


def test_end_to_end_from_a_project_tree(tmp_path: Path) -> None:
    """The index built from the files on disk decides whether the fix is offered."""
    write(tmp_path, "app/__init__.py", "")
    handlers = tmp_path / "app" / "handlers.py"
    handlers.write_bytes(SESSION_SOURCE)
    write(tmp_path, "requirements.txt", "sqlalchemy[asyncio]>=2\nasyncpg>=0.32\n")
    config = Config(root=str(tmp_path), project=ProjectIndex(**dependency_facts(tmp_path)))
    outcome = fix_source(SESSION_SOURCE, str(handlers), config, unsafe=True)
    assert not outcome.changed
    write(tmp_path, "requirements.txt", "sqlalchemy[asyncio]>=2\nsession-runtime>=0.1\n")
    config = Config(root=str(tmp_path), project=ProjectIndex(**dependency_facts(tmp_path)))
    outcome = fix_source(SESSION_SOURCE, str(handlers), config, unsafe=True)
    assert outcome.changed
    assert b"from session_runtime import get_session" in outcome.source


def test_the_no_dependency_fixture_names_the_setting() -> None:
    fx = load(RULE_FIXTURES / "SL101_no_dependency.py")
    assert fx.no_fix and "session-runtime" not in fx.config.project.dependencies
    found = analyze(fx.source, fx.path, fx.config, [RULES_BY_CODE["SL101"]]).findings
    assert len(found) == len(fx.expected) == 2
    for finding in found:
        assert finding.fix is None
        assert "set `session-factory` in [tool.session-lint]" in finding.message


# -- SL207 and SL205 with an old asyncpg ---------------------------------------------
@pytest.mark.parametrize(
    "requirements",
    [
        ["asyncpg>=0.32"],
        ["asyncpg==0.32.0"],
        ["asyncpg<=0.32"],
        ["asyncpg~=0.29"],
        ["asyncpg"],
        ["sqlalchemy"],
    ],
)
def test_sl207_is_silent_when_asyncpg_may_be_032(requirements: list[str]) -> None:
    fx = load(RULE_FIXTURES / "SL207.py")
    config = fx.config.with_overrides(project=index_from_requirements(requirements))
    assert analyze(fx.source, fx.path, config, [RULES_BY_CODE["SL207"]]).findings == []


@pytest.mark.parametrize("pooler", ["session", "none"])
def test_sl207_is_silent_without_a_transaction_pooler(pooler: str) -> None:
    fx = load(RULE_FIXTURES / "SL207.py")
    config = fx.config.with_overrides(pooler=pooler)
    assert analyze(fx.source, fx.path, config, [RULES_BY_CODE["SL207"]]).findings == []


def test_sl207_checks_every_asyncpg_engine_when_the_pooler_is_configured() -> None:
    fx = load(RULE_FIXTURES / "SL207.py")
    config = fx.config.with_overrides(pooler="transaction")
    found = analyze(fx.source, fx.path, config, [RULES_BY_CODE["SL207"]]).findings
    assert len(found) == len(fx.expected) + 1  # the direct asyncpg engine too
    assert found[0].message.startswith("asyncpg is capped below 0.31 in this project")


def test_sl205_keeps_the_name_function_of_an_old_asyncpg() -> None:
    fx = load(RULE_FIXTURES / "SL205.py")
    rule = RULES_BY_CODE["SL205"]
    old = fx.config.with_overrides(project=index_from_requirements(["asyncpg==0.29.0"]))
    new = analyze(fx.source, fx.path, fx.config, [rule]).findings
    kept = analyze(fx.source, fx.path, old, [rule]).findings
    assert [f.line for f in kept] == [f.line for f in new]  # still reported
    assert any(f.fix is not None for f in new)
    assert all(f.fix is None and "upgrade asyncpg first (SL207)" in f.message for f in kept)
    assert not fix_source(fx.source, fx.path, old, [rule], unsafe=True).changed
