"""File roles (``session_lint.project.roles``): which role a file has, which rules run in
each role, the ``roles``/``rule-roles`` config tables, and what the CLI and the
flake8 plugin make of them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from session_lint.analyzer import analyze, enabled_rules
from session_lint.project.config import (
    DEFAULT_ROLES,
    Config,
    ConfigError,
    config_from_mapping,
    rule_codes,
)
from session_lint.project.roles import (
    ALL_ROLES,
    APP_AND_MIGRATION,
    APP_AND_SCRIPT,
    APP_ONLY,
    APP_SCRIPT_AND_MIGRATION,
    role_of,
)
from session_lint.rules import ALL_RULES, RULES_BY_CODE, Rule
from tests.lint.test_cli import cli
from tests.lint.test_flake8 import flake8_config, run_flake8

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAIN = b'import asyncio\n\n\nif __name__ == "__main__":\n    asyncio.run(main())\n'
FUNCTIONS_AND_MAIN = (
    b"import asyncio\n\n\nasync def seed() -> None:\n    ...\n\n\n"
    b"def helper() -> int:\n    return 1\n\n\n"
    b"if __name__ == '__main__':\n    asyncio.run(seed())\n"
)
ALEMBIC_ENV = b"from alembic import context\n\ncontext.configure(connection=None)\n"


def _role(tmp_path: Path, rel: str, source: bytes | None = None, **config: object) -> str:
    conf = config_from_mapping(config, root=str(tmp_path)) if config else Config(root=str(tmp_path))
    return role_of(str(tmp_path / rel), conf, source)


# -- the role of a file ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("rel", "source", "role"),
    [
        # test
        ("tests/test_a.py", b"", "test"),
        ("tests/helpers.py", None, "test"),
        ("src/app/tests/helpers.py", b"x = 1\n", "test"),
        ("test/util.py", None, "test"),
        ("app/test_models.py", None, "test"),
        ("app/models_test.py", None, "test"),
        ("conftest.py", b"", "test"),
        ("src/app/conftest.py", None, "test"),
        # migration
        ("alembic/env.py", None, "migration"),
        ("db/env.py", ALEMBIC_ENV, "migration"),
        ("db/env.py", b"import os\ncontext.configure(url=os.environ['URL'])\n", "migration"),
        ("app/migrations/versions/0001_x.py", b"", "migration"),
        ("alembic/versions/0002_y.py", None, "migration"),
        ("pkg/server/database/_migrations/versions/sqlite/0001.py", None, "migration"),
        ("migrations/helpers.py", None, "migration"),
        # script
        ("scripts/seed.py", b"", "script"),
        ("src/app/scripts/backfill.py", None, "script"),
        ("bin/run.py", None, "script"),
        ("tools/gen_docs.py", None, "script"),
        ("app/__main__.py", b"from app.cli import main\n\nmain()\n", "script"),
        ("app/seed.py", MAIN, "script"),
        ("app/jobs.py", FUNCTIONS_AND_MAIN, "script"),
        ("app/rev.py", b"x = 1\nif '__main__' == __name__:\n    pass\n", "script"),
        # app
        ("app/service.py", b"x = 1\n", "app"),
        ("app/service.py", None, "app"),
        ("fixtures/rules/SL101.py", b"", "app"),
        ("fixtures/apps/flow_clean/app/tasks/imports.py", b"", "app"),
        ("app/tools/search.py", None, "app"),  # an agent's tools: ``tools/`` only at the root
        ("app/contest.py", None, "app"),
        ("app/testing_utils.py", None, "app"),
        ("app/latest.py", None, "app"),
        ("db/env.py", b"import os\nDEBUG = os.environ.get('DEBUG')\n", "app"),
        ("env.py", None, "app"),  # no versions/ beside it, not under alembic/ or migrations/
        ("app/__init__.py", MAIN, "app"),  # a package is imported, not run
        ("app/cli.py", b"def main():\n    if __name__ == '__main__':\n        run()\n", "app"),
        ("app/names.py", b'NAME = "__main__"\nif NAME == "__main__":\n    pass\n', "app"),
        ("app/seed.py", None, "app"),  # no bytes: the __main__ block cannot be seen
    ],
)
def test_role_of(tmp_path: Path, rel: str, source: bytes | None, role: str) -> None:
    assert _role(tmp_path, rel, source) == role


@pytest.mark.parametrize(
    ("rel", "source", "role"),
    [
        ("tests/scripts/run.py", MAIN, "test"),  # test before script
        ("tests/alembic/env.py", ALEMBIC_ENV, "test"),  # test before migration
        ("migrations/scripts/fix.py", MAIN, "migration"),  # migration before script
        ("alembic/env.py", ALEMBIC_ENV, "migration"),
    ],
)
def test_precedence(tmp_path: Path, rel: str, source: bytes, role: str) -> None:
    assert _role(tmp_path, rel, source) == role


def test_env_py_beside_versions_without_bytes(tmp_path: Path) -> None:
    (tmp_path / "db" / "versions").mkdir(parents=True)
    assert _role(tmp_path, "db/env.py") == "migration"
    # The bytes, when given, decide: this env.py is not Alembic's.
    assert _role(tmp_path, "db/env.py", b"DEBUG = True\n") == "app"


def test_paths_are_relative_to_the_config_root(tmp_path: Path) -> None:
    # The root itself sits under a tests/ directory: only the part below it counts.
    root = tmp_path / "tests" / "project"
    assert role_of(str(root / "app" / "service.py"), Config(root=str(root))) == "app"
    assert role_of(str(root / "tests" / "test_a.py"), Config(root=str(root))) == "test"


# -- configured roles ----------------------------------------------------------------
def test_a_configured_role_replaces_its_defaults(tmp_path: Path) -> None:
    roles = {"test": ["qa/**"]}
    assert _role(tmp_path, "qa/check_orders.py", roles=roles) == "test"
    assert _role(tmp_path, "tests/test_a.py", roles=roles) == "app"
    assert _role(tmp_path, "conftest.py", roles=roles) == "app"
    # The other roles keep theirs.
    assert _role(tmp_path, "scripts/seed.py", roles=roles) == "script"
    assert _role(tmp_path, "alembic/env.py", roles=roles) == "migration"


def test_configured_roles_keep_the_order_of_precedence(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"roles": {"script": ["jobs/**"], "test": ["jobs/test_*.py"]}}, root=str(tmp_path)
    )
    assert [role for role, _ in config.roles] == ["test", "migration", "script"]
    assert role_of(str(tmp_path / "jobs/test_nightly.py"), config) == "test"
    assert role_of(str(tmp_path / "jobs/nightly.py"), config) == "script"


def test_content_checks_are_part_of_the_defaults(tmp_path: Path) -> None:
    # Replacing the script globs drops the __main__ check unless it is listed again.
    assert _role(tmp_path, "app/jobs.py", FUNCTIONS_AND_MAIN, roles={"script": ["jobs/**"]}) == (
        "app"
    )
    keep = {"script": ["jobs/**", "<main-block>"]}
    assert _role(tmp_path, "app/jobs.py", FUNCTIONS_AND_MAIN, roles=keep) == "script"
    # An empty list: no file has the role.
    assert _role(tmp_path, "scripts/seed.py", roles={"script": []}) == "app"
    assert _role(tmp_path, "db/env.py", ALEMBIC_ENV, roles={"migration": ["<alembic-env>"]}) == (
        "migration"
    )


def test_rule_roles_override_a_rules_defaults() -> None:
    config = config_from_mapping({"rule-roles": {"SL301": ["app", "test"]}})
    sl301, sl101 = RULES_BY_CODE["SL301"], RULES_BY_CODE["SL101"]
    assert sl301.roles_in(config) == {"app", "test"}
    assert sl301.roles_in(Config()) == APP_ONLY
    assert sl101.roles_in(config) == APP_ONLY
    assert sl301 in enabled_rules(config, "tests/test_a.py", [sl301])
    assert enabled_rules(Config(), "tests/test_a.py", [sl301]) == []
    narrowed = config_from_mapping({"rule-roles": {"SL403": ["app"]}})
    assert enabled_rules(narrowed, "tests/test_a.py", [RULES_BY_CODE["SL403"]]) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"roles": ["tests/**"]}, "'roles' must map role names to lists of globs"),
        ({"roles": {"tst": ["qa/**"]}}, "'roles.tst': unknown role"),
        ({"roles": {"test": "qa/**"}}, "'roles.test' must be a list of globs"),
        ({"roles": {"script": ["bin/**", 3]}}, "'roles.script' must be a list of globs"),
        ({"roles": {"app": ["src/**"]}}, "'roles.app' cannot be configured"),
        ({"roles": {"script": ["<main>"]}}, "'roles.script': unknown check '<main>'"),
        ({"rule-roles": ["SL301"]}, "'rule-roles' must map rule codes to lists of roles"),
        ({"rule-roles": {"SL999": ["app"]}}, "'rule-roles.SL999': unknown rule code 'SL999'"),
        ({"rule-roles": {"SL3": ["app"]}}, "'rule-roles.SL3': unknown rule code 'SL3'"),
        ({"rule-roles": {"SL301": "test"}}, "'rule-roles.SL301' must be a list of roles"),
        ({"rule-roles": {"SL301": ["tests"]}}, "'rule-roles.SL301': unknown role 'tests'"),
    ],
)
def test_bad_config(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_mapping(data, source="pyproject.toml")


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.session-lint.roles]\ntset = ["qa/**"]\n')
    (tmp_path / "a.py").write_text("x = 1\n")
    proc = cli(cwd=tmp_path)
    assert proc.returncode == 2
    assert "'roles.tset': unknown role" in proc.stderr


def test_rule_codes_are_the_registry() -> None:
    assert rule_codes() == set(RULES_BY_CODE)


def test_roles_are_part_of_the_fingerprint_and_config_stays_hashable() -> None:
    base = Config()
    hash(base)
    assert base.roles == DEFAULT_ROLES
    for changed in (
        config_from_mapping({"roles": {"test": ["qa/**"]}}),
        config_from_mapping({"rule-roles": {"SL301": ["app", "test"]}}),
    ):
        hash(changed)
        assert changed != base
        assert changed.fingerprint() != base.fingerprint()


# -- which rules run where -------------------------------------------------------------
EVERY_ROLE = {
    "SL000", "SL001", "SL201", "SL203", "SL204", "SL205", "SL206", "SL207",
    "SL303", "SL402", "SL403", "SL405", "SL406", "SL501",
}  # fmt: skip
APP_AND_SCRIPT_RULES = {"SL401", "SL407", "SL408", "SL502"}
APP_ONLY_RULES = {
    "SL101", "SL102", "SL103", "SL104", "SL105", "SL202",
    "SL301", "SL302", "SL304", "SL305", "SL306", "SL307", "SL308", "SL404",
    "SL409",
}  # fmt: skip
# In a migration only where it runs on the app's own connection (docs/rules/SL503.md).
APP_AND_MIGRATION_RULES = {"SL503"}
# The aborted transaction fails the same in a script or a migration.
APP_SCRIPT_AND_MIGRATION_RULES = {"SL309", "SL310", "SL311"}


def test_the_table_covers_every_rule_once() -> None:
    groups = (
        EVERY_ROLE,
        APP_AND_SCRIPT_RULES,
        APP_ONLY_RULES,
        APP_AND_MIGRATION_RULES,
        APP_SCRIPT_AND_MIGRATION_RULES,
    )
    assert sum(len(g) for g in groups) == len(ALL_RULES)
    assert set().union(*groups) == set(RULES_BY_CODE)


@pytest.mark.parametrize("rule", ALL_RULES, ids=[r.code for r in ALL_RULES])
def test_rule_roles_follow_the_table(rule: type[Rule]) -> None:
    expected = (
        ALL_ROLES
        if rule.code in EVERY_ROLE
        else APP_AND_SCRIPT
        if rule.code in APP_AND_SCRIPT_RULES
        else APP_AND_MIGRATION
        if rule.code in APP_AND_MIGRATION_RULES
        else APP_SCRIPT_AND_MIGRATION
        if rule.code in APP_SCRIPT_AND_MIGRATION_RULES
        else APP_ONLY
    )
    assert rule.roles == expected
    # Each rule module states its roles, rather than inheriting them silently.
    assert "roles" in vars(rule)


@pytest.mark.parametrize("rule", ALL_RULES, ids=[r.code for r in ALL_RULES])
def test_docs_say_where_the_rule_runs(rule: type[Rule]) -> None:
    section = rule.doc_section("Where it runs")
    assert section, f"{rule.code}: no ## Where it runs section"
    for role in rule.roles:
        assert f"`{role}`" in section
    if rule.roles != ALL_ROLES:
        assert "`rule-roles`" in section


def test_analyze_drops_rules_by_role() -> None:
    source = (
        b"from sqlalchemy.ext.asyncio import AsyncSession\n\n\n"
        b"async def handler(engine):\n"
        b"    async with AsyncSession(engine) as session:\n"
        b"        session.commit()\n"
    )
    found = {
        path: sorted({f.code for f in analyze(source, path, Config()).findings})
        for path in ("app/service.py", "tests/test_a.py", "alembic/versions/1_x.py")
    }
    assert found == {
        "app/service.py": ["SL101", "SL403"],
        "tests/test_a.py": ["SL403"],
        "alembic/versions/1_x.py": ["SL403"],
    }
    # The same bytes with a __main__ block: a script.
    script = analyze(source + b'\nif __name__ == "__main__":\n    pass\n', "app/x.py", Config())
    assert sorted({f.code for f in script.findings}) == ["SL403"]


# -- command line ----------------------------------------------------------------------
SERVICE = """\
from sqlalchemy.ext.asyncio import AsyncSession


async def handler(engine):
    async with AsyncSession(engine) as session:
        session.commit()
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.session-lint]\n")
    for rel in ("app/service.py", "tests/test_a.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(SERVICE)
    return tmp_path


def test_cli_end_to_end(tree: Path) -> None:
    proc = cli("--format", "json", "--no-cache", ".", cwd=tree)
    assert proc.returncode == 1, proc.stderr
    found = sorted((row["path"], row["code"]) for row in json.loads(proc.stdout))
    assert found == [
        ("app/service.py", "SL101"),
        ("app/service.py", "SL403"),
        ("tests/test_a.py", "SL403"),
    ]


def test_cli_rule_roles_widen_a_rule(tree: Path) -> None:
    (tree / "pyproject.toml").write_text(
        '[tool.session-lint.rule-roles]\nSL101 = ["app", "test"]\n'
    )
    proc = cli("--format", "json", "--no-cache", "--select", "SL101", ".", cwd=tree)
    found = sorted(row["path"] for row in json.loads(proc.stdout))
    assert found == ["app/service.py", "tests/test_a.py"]


def test_explain_prints_the_roles(tmp_path: Path) -> None:
    here = tmp_path
    assert cli("--explain", "SL301", cwd=here).stdout.endswith("\nRuns in: app\n")
    assert cli("--explain", "SL401", cwd=here).stdout.endswith("\nRuns in: app, script\n")
    assert cli("--explain", "SL403", cwd=here).stdout.endswith(
        "\nRuns in: app, script, test, migration\n"
    )


def test_list_rules_shows_the_roles(tmp_path: Path) -> None:
    here = tmp_path
    lines = cli("--list-rules", cwd=here).stdout.splitlines()
    by_code = {line[:5]: line for line in lines}
    assert "  runs in: app          " in by_code["SL101"]
    assert "  runs in: app, script  " in by_code["SL502"]
    assert "  runs in: all          " in by_code["SL403"]
    rows = json.loads(cli("--list-rules", "--format", "json", cwd=here).stdout)
    roles = {row["code"]: row["roles"] for row in rows}
    assert roles["SL101"] == ["app"]
    assert roles["SL401"] == ["app", "script"]
    assert roles["SL000"] == ["app", "script", "test", "migration"]


def test_show_settings(tree: Path) -> None:
    (tree / "pyproject.toml").write_text(
        "[tool.session-lint]\n"
        'pooler = "transaction"\n'
        '[tool.session-lint.roles]\ntest = ["tests/**", "qa/**"]\n'
        '[tool.session-lint.rule-roles]\nSL301 = ["app", "test"]\n'
    )
    proc = cli("--show-settings", "tests/test_a.py", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("path: tests/test_a.py\nrole: test\nengine module: no\n")
    rules = re.search(r"^rules: (.*)$", out, re.M)
    assert rules is not None
    codes = rules.group(1).split(", ")
    assert "SL101" not in codes and "SL403" in codes and "SL301" in codes
    assert f"root = {json.dumps(str(tree))}" in out
    assert 'pooler = "transaction"' in out
    assert 'roles.test = ["tests/**", "qa/**"]' in out
    assert (
        'roles.script = ["**/scripts/**", "bin/**", "tools/**", "__main__.py", "<main-block>"]'
        in out
    )
    assert 'rule-roles = { "SL301" = ["app", "test"] }' in out
    assert 'session-names = ["session", "db", "db_session"]' in out
    assert "engine-modules = [" in out

    app = cli("--show-settings", "app/service.py", "--ignore", "SL403", cwd=tree).stdout
    assert "role: app\n" in app
    codes = re.findall(r"^rules: (.*)$", app, re.M)[0].split(", ")
    assert "SL101" in codes and "SL403" not in codes

    (tree / "app" / "db.py").write_text("x = 1\n")
    engine = cli("--show-settings", "app/db.py", cwd=tree).stdout
    assert "engine module: yes\n" in engine
    assert "no SQLAlchemy evidence: " in engine


def test_show_settings_needs_a_path_that_exists(tree: Path) -> None:
    proc = cli("--show-settings", "missing.py", cwd=tree)
    assert proc.returncode == 2
    assert "--show-settings missing.py: " in proc.stderr
    assert proc.stdout == ""


def test_show_settings_of_a_directory_has_no_role(tree: Path) -> None:
    """``--show-settings [PATH]``: a directory gets the resolved settings; a role
    belongs to a file."""
    proc = cli("--show-settings", "app", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert "role: (a directory: each file has its own; name a file to see it)\n" in proc.stdout
    assert "\n# settings\n" in proc.stdout and "\nselect = " in proc.stdout


# -- flake8 ------------------------------------------------------------------------------
def test_flake8_plugin_uses_roles(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.session-lint]\n")
    for rel in ("tests/test_x.py", "app/x.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(SERVICE)
    config = flake8_config(tmp_path)
    found = run_flake8([str(tmp_path / "tests/test_x.py"), str(tmp_path / "app/x.py")], config)
    codes = sorted(
        (Path(path).relative_to(tmp_path).as_posix(), code) for path, _, _, code in found
    )
    assert codes == [("app/x.py", "SL101"), ("app/x.py", "SL403"), ("tests/test_x.py", "SL403")]


# -- docs ----------------------------------------------------------------------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "roles.md"


def test_docs_table_is_the_registry() -> None:
    text = DOCS.read_text(encoding="utf-8")
    rows = {
        label: set(re.findall(r"SL\d{3}", codes))
        for label, codes in re.findall(
            r"^\| (every role|`app`, `script`, `migration`|`app`, `script`|`app`, `migration`|`app`) \| ([^|]+) \|",
            text,
            re.M,
        )
    }
    assert rows == {
        "every role": {r.code for r in ALL_RULES if r.roles == ALL_ROLES},
        "`app`, `script`": {r.code for r in ALL_RULES if r.roles == APP_AND_SCRIPT},
        "`app`": {r.code for r in ALL_RULES if r.roles == APP_ONLY},
        "`app`, `migration`": {r.code for r in ALL_RULES if r.roles == APP_AND_MIGRATION},
        "`app`, `script`, `migration`": {
            r.code for r in ALL_RULES if r.roles == APP_SCRIPT_AND_MIGRATION
        },
    }
    for role, patterns in DEFAULT_ROLES:
        row = re.search(rf"^\| `{role}` \| (.+) \|$", text, re.M)
        assert row is not None, role
        assert re.findall(r"`([^`]+)`", row.group(1)) == list(patterns)


def test_docs_config_examples_load() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    readme = (DOCS.parents[1] / "README.md").read_text(encoding="utf-8")
    blocks += [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "roles" in b]
    assert len(blocks) == 2
    for block in blocks:
        table = tomllib.loads(block)["tool"]["session-lint"]
        config = config_from_mapping(table)
        assert config.roles != DEFAULT_ROLES
        assert config.rule_roles
