"""Configuration: finding the file, validating it, and the globs it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from session_lint.project.config import Config, ConfigError, config_from_mapping, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discovery_walks_up_to_the_nearest_table(tmp_path: Path) -> None:
    top = write(tmp_path / "pyproject.toml", '[tool.session-lint]\npooler = "transaction"\n')
    # A pyproject.toml without our table is not ours: keep walking.
    write(tmp_path / "pkg" / "pyproject.toml", '[project]\nname = "pkg"\n')
    file = write(tmp_path / "pkg" / "src" / "deep" / "mod.py", "x = 1\n")
    config = load_config([str(file)])
    assert config.pooler == "transaction"
    assert config.source == str(top)
    assert Path(config.root) == tmp_path
    # A directory as the first path works the same.
    assert load_config([str(file.parent)]).source == str(top)


def test_nearest_table_wins(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.session-lint]\npooler = "transaction"\n')
    inner = write(tmp_path / "svc" / "pyproject.toml", '[tool.session-lint]\npooler = "none"\n')
    config = load_config([str(tmp_path / "svc" / "app.py")])
    assert config.pooler == "none" and config.source == str(inner)


def test_no_config_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config([str(tmp_path)])
    # The defaults, with the (empty) index of the project at the root.
    assert config.source is None and config.with_overrides(project=Config().project) == Config()
    assert config.project.scanned and config.root == str(tmp_path)
    assert config.is_enabled("SL101")


def test_explicit_file_with_top_level_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "lint.toml", 'select = ["SL2"]\nignore = ["SL203"]\n')
    config = load_config(["."], str(path))
    assert config.is_enabled("SL201") and not config.is_enabled("SL203")
    assert not config.is_enabled("SL101")
    with pytest.raises(ConfigError, match="not found"):
        load_config(["."], str(tmp_path / "absent.toml"))


def test_unknown_key_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", '[tool.session-lint]\nsesion-names = ["s"]\n')
    with pytest.raises(ConfigError, match="'sesion-names'") as info:
        load_config([str(tmp_path)])
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.session-lint\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config([str(tmp_path)])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"select": "SL1"}, "'select' must be a list of strings"),
        ({"ignore": ["SL1", 2]}, "'ignore' must be a list of strings"),
        ({"pooler": "pgbouncer"}, "'pooler' must be one of"),
        ({"pooler": 6543}, "'pooler' must be a string"),
        ({"session-factory": "app.db.get_session"}, "'session-factory' must look like"),
        ({"engine-factory": ":make_engine"}, "'engine-factory' must look like"),
        ({"per-file-ignores": {"tests/*": "SL101"}}, "'per-file-ignores' must map"),
        ({"per-file-ignores": ["tests/*"]}, "'per-file-ignores' must map"),
    ],
)
def test_bad_types(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(data, source="pyproject.toml")


def test_per_file_ignores_globs(tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "per-file-ignores": {
                "tests/**": ["SL1"],
                "app/legacy/*": ["SL301", "SL302"],
                "*.pyi": ["SL"],
                # Negation: everything *except* the core package may build sessions by hand.
                "!app/core/**": ["SL101"],
            }
        },
        root=str(tmp_path),
    )

    def ignored(rel: str) -> set[str]:
        return set(config.ignored_for(str(tmp_path / rel)))

    assert ignored("tests/lint/test_x.py") == {"SL1", "SL101"}
    assert ignored("app/legacy/old.py") == {"SL301", "SL302", "SL101"}
    assert ignored("app/legacy/deeper/old.py") >= {"SL301"}
    assert ignored("stubs/app.pyi") == {"SL", "SL101"}
    assert ignored("app/core/models.py") == set()
    assert ignored("app/core/db/x.py") == set()
    assert ignored("app/corex.py") == {"SL101"}


def test_globs_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    write(
        project / "pyproject.toml",
        '[tool.session-lint]\n[tool.session-lint.per-file-ignores]\n"app/legacy/*" = ["SL101"]\n',
    )
    config = load_config([str(project)])
    monkeypatch.chdir(project / "..")  # paths relative to a different working directory
    assert config.ignored_for("project/app/legacy/old.py") == ("SL101",)
    assert config.ignored_for("project/app/new.py") == ()
    monkeypatch.chdir(project)
    assert config.ignored_for("app/legacy/old.py") == ("SL101",)
    assert config.ignored_for("-") == ()


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("engine.py", True),
        ("app/engine.py", True),
        ("app/database.py", True),
        ("app/db.py", True),
        ("app/session.py", True),
        ("app/async_session.py", True),
        ("app/db/models.py", True),
        ("db/__init__.py", True),
        ("app/session/factory.py", True),
        ("app/sessions.py", False),
        ("app/dbx/models.py", False),
        ("app/handlers.py", False),
        ("app/services/engine_utils.py", False),
        ("app/my_db.py", False),
    ],
)
def test_default_engine_modules(tmp_path: Path, rel: str, expected: bool) -> None:
    assert Config(root=str(tmp_path)).is_engine_module(str(tmp_path / rel)) is expected


def test_configured_engine_modules(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"engine-modules": ["app/infra/*.py", "**/wiring.py"]}, root=str(tmp_path)
    )
    assert config.is_engine_module(str(tmp_path / "app/infra/pg.py"))
    assert config.is_engine_module(str(tmp_path / "svc/a/wiring.py"))
    assert config.is_engine_module(str(tmp_path / "wiring.py"))
    # Configuring the list replaces the defaults.
    assert not config.is_engine_module(str(tmp_path / "app/engine.py"))
    assert not config.is_engine_module(str(tmp_path / "app/infra.py"))


def test_excludes(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"exclude": ["migrations"], "extend-exclude": ["app/generated/**"]}, root=str(tmp_path)
    )
    assert config.is_excluded(str(tmp_path / "migrations/versions/001.py"))
    assert config.is_excluded(str(tmp_path / "svc/migrations/env.py"))
    assert config.is_excluded(str(tmp_path / "app/generated/models.py"))
    assert not config.is_excluded(str(tmp_path / "app/models.py"))


def test_fingerprint_follows_what_changes_findings(tmp_path: Path) -> None:
    base = Config(root=str(tmp_path))
    assert base.fingerprint() == Config(root=str(tmp_path / "elsewhere")).fingerprint()
    for changed in (
        base.with_overrides(select=("SL1",)),
        base.with_overrides(pooler="transaction"),
        base.with_overrides(session_names=("s",)),
        base.with_overrides(per_file_ignores=(("x/*", ("SL1",)),)),
    ):
        assert changed.fingerprint() != base.fingerprint()


def test_opt_in_rules_need_their_full_code() -> None:
    from session_lint.rules import ALL_RULES

    opt_in = sorted(r.code for r in ALL_RULES if r.opt_in)
    assert opt_in == ["SL102", "SL302"]  # SL404 runs by default in its always-leaking form
    for code in opt_in:
        assert not Config().is_enabled(code, opt_in=True)
        assert not Config(select=("ALL",)).is_enabled(code, opt_in=True)
        assert not Config(select=("SL3", "SL1", "SL4")).is_enabled(code, opt_in=True)
        assert Config(extend_select=(code,)).is_enabled(code, opt_in=True)
        assert Config(select=(code,)).is_enabled(code, opt_in=True)
        assert not Config(extend_select=(code,), ignore=(code,)).is_enabled(code, opt_in=True)
    # The same prefixes select every other rule.
    assert Config(select=("SL3",)).is_enabled("SL301")
