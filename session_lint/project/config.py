"""``[tool.session-lint]`` in pyproject.toml -> :class:`Config`.

Unknown keys are an error naming the key: a misspelt option silently ignored is a
linter that quietly checks less than its user believes.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

from session_lint.finding import Import
from session_lint.known import DEFAULT_SLOW_CALLS
from session_lint.project.facts import EMPTY_INDEX, ProjectIndex
from session_lint.project.hashing import hash_once, state_without_hash

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

POOLER_MODES = ("auto", "transaction", "session", "none")
DEFAULT_SESSION_FACTORY = "session_runtime:get_session"

DEFAULT_ENGINE_MODULES = (
    "engine.py",
    "session.py",
    "database.py",
    "db.py",
    "async_session.py",
    "**/db/**",
    "**/session/**",
)



# File roles, in order of precedence (see ``session_lint.project.roles``). ``app`` takes no
# patterns: it is every file no other role claims.
ROLES = ("test", "migration", "script", "app")
APP = "app"
# Content checks a role's list may hold beside its globs (see ``session_lint.project.roles``).
ALEMBIC_ENV = "<alembic-env>"
MAIN_BLOCK = "<main-block>"
ROLE_CHECKS = (ALEMBIC_ENV, MAIN_BLOCK)
DEFAULT_ROLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("test", ("**/tests/**", "**/test/**", "test_*.py", "*_test.py", "conftest.py")),
    ("migration", (ALEMBIC_ENV, "**/migrations/**", "**/alembic/**", "**/_migrations/**")),
    # ``tools`` and ``bin`` only at the root: inside a package a ``tools`` directory
    # is as often application code (an agent's tools, admin tools) as scripts.
    ("script", ("**/scripts/**", "bin/**", "tools/**", "__main__.py", MAIN_BLOCK)),
)


class ConfigError(Exception):
    """A configuration problem the user must fix (exit code 2)."""


@dataclass(frozen=True)
class Config:
    select: tuple[str, ...] = ("SL",)
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = ()
    extend_exclude: tuple[str, ...] = ()
    # Skip what git ignores when walking (see ``session_lint.project.gitignore``).
    respect_gitignore: bool = True
    session_factory: str = DEFAULT_SESSION_FACTORY
    background_session_factory: str = "session_runtime:get_background_session"
    engine_factory: str = "session_runtime:make_engine"
    engine_modules: tuple[str, ...] = DEFAULT_ENGINE_MODULES
    session_names: tuple[str, ...] = ("session", "db", "db_session")
    pooler: str = "auto"
    extra_execution_options: tuple[str, ...] = ()
    slow_calls: tuple[str, ...] = DEFAULT_SLOW_CALLS
    # (role, patterns) in order of precedence, ``app`` left out; a configured role
    # replaces its default patterns. Pairs, not a dict: Config stays hashable.
    roles: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_ROLES
    # (rule code, roles): a rule's roles in place of its default ones.
    rule_roles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # What the pass over the whole project learned (see ``project_index``).
    project: ProjectIndex = EMPTY_INDEX
    # Where the config file lives; globs in the file are relative to it.
    root: str = field(default=".", compare=False)
    source: str | None = field(default=None, compare=False)

    # Every rule's cached lookups are keyed on the config: hash it once
    # (session_lint/project/hashing.py).
    def __hash__(self) -> int:
        return hash_once(self)

    def __getstate__(self) -> dict[str, Any]:
        return state_without_hash(self)

    # -- rule selection -------------------------------------------------
    def is_enabled(self, code: str, *, opt_in: bool = False) -> bool:
        """Selected and not ignored, the more specific selector winning as in ruff
        and flake8: ``select = ["SL101"]`` with ``ignore = ["SL1"]`` runs SL101;
        at equal specificity ``ignore`` wins. An opt-in rule (one whose findings on
        real code are too often deliberate) is selected only by its full code:
        ``SL`` or ``ALL`` do not turn it on."""
        selectors = (*self.select, *self.extend_select)
        if opt_in:
            selectors = tuple(s for s in selectors if s == code)
        selected = _specificity(code, selectors)
        if selected is None:
            return False
        ignored = _specificity(code, self.ignore)
        return ignored is None or selected > ignored

    def ignored_for(self, path: str) -> tuple[str, ...]:
        """Code prefixes that per-file-ignores switches off for ``path``."""
        rel = self.relative(path)
        out: list[str] = []
        for pattern, codes in self.per_file_ignores:
            negate = pattern.startswith("!")
            hit = glob_match(rel, pattern[1:] if negate else pattern)
            if hit != negate:
                out.extend(codes)
        return tuple(out)

    def roles_of_rule(self, code: str) -> tuple[str, ...] | None:
        """The roles ``rule-roles`` gives this rule, or None when it gives none."""
        for configured, roles in self.rule_roles:
            if configured == code:
                return roles
        return None

    @functools.cached_property
    def configured_factories(self) -> frozenset[str]:
        """Qualified names (``session_runtime.get_session``) of the configured
        session factories."""
        out: set[str] = set()
        for target in (self.session_factory, self.background_session_factory):
            try:
                imp = Import.from_target(target)
            except ValueError:
                continue
            out.add(f"{imp.module}.{imp.name}")
        return frozenset(out)

    def is_engine_module(self, path: str) -> bool:
        rel = self.relative(path)
        return any(glob_match(rel, pattern) for pattern in self.engine_modules)

    def is_excluded(self, path: str) -> bool:
        rel = self.relative(path)
        return any(glob_match(rel, p) for p in (*self.exclude, *self.extend_exclude))

    def relative(self, path: str) -> str:
        """``path`` relative to the root, resolved (``Path.resolve().relative_to``),
        or as given when outside it; with ``/`` separators."""
        if path == "-":
            return path
        try:
            real, root = _realpath(path, os.getcwd()), _real_root(self.root)
        except (OSError, ValueError):
            return Path(path).as_posix()
        if real == root:
            return "."
        prefix = root.rstrip(os.sep) + os.sep
        if not real.startswith(prefix):
            return Path(path).as_posix()
        return real[len(prefix) :].replace(os.sep, "/")

    def fingerprint(self) -> str:
        """A stable hash of everything that can change findings (for the cache)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        data["project"] = self.project.fingerprint()
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _real_root(root: str) -> str:
    # Resolved once, not once per file (a run asks for every file's relative
    # path); a relative root follows the working directory, so it is not kept.
    return _real_absolute(root) if os.path.isabs(root) else os.path.realpath(root)


@functools.lru_cache(maxsize=64)
def _real_absolute(root: str) -> str:
    return os.path.realpath(root)


# Planning a file asks for its relative path three times (its role, its ignores,
# its evidence): resolve each path once. Keyed on the working directory, which
# a relative path follows.
@functools.lru_cache(maxsize=8192)
def _realpath(path: str, cwd: str) -> str:
    return os.path.realpath(path)


def _specificity(code: str, prefixes: Iterable[str]) -> int | None:
    """How specific the most specific of ``prefixes`` matching ``code`` is (its
    length; ``ALL`` is 0), None when none matches."""
    lengths = [0 if p == "ALL" else len(p) for p in prefixes if p == "ALL" or code.startswith(p)]
    return max(lengths, default=None)


def unknown_selector(selector: str, codes: Iterable[str]) -> bool:
    """Whether ``selector`` (a code, a prefix or ``ALL``) matches no rule code."""
    return selector != "ALL" and not any(code.startswith(selector) for code in codes)


def glob_match(rel_path: str, pattern: str) -> bool:
    """gitignore-flavoured glob: a pattern without '/' matches any file name or
    directory component; ``**/`` matches any number of leading directories."""
    if rel_path.startswith("./"):
        rel_path = rel_path[2:]
    parts = PurePosixPath(rel_path).parts
    pattern = pattern.rstrip("/")
    if "/" not in pattern:
        return any(fnmatch.fnmatchcase(part, pattern) for part in parts)
    candidates = [pattern]
    if pattern.startswith("**/"):
        candidates.append(pattern[3:])
    for pat in candidates:
        if fnmatch.fnmatchcase(rel_path, pat):
            return True
        if pat.endswith("/**") and fnmatch.fnmatchcase(rel_path, pat[:-3]):
            return True
        # A directory pattern also matches everything below it.
        for i in range(1, len(parts)):
            if fnmatch.fnmatchcase("/".join(parts[:i]), pat):
                return True
    return False


# -- loading ---------------------------------------------------------------

_LIST_KEYS = {
    "select",
    "ignore",
    "extend-select",
    "exclude",
    "extend-exclude",
    "engine-modules",
    "session-names",
    "extra-execution-options",
    "slow-calls",
}
_STR_KEYS = {"session-factory", "background-session-factory", "engine-factory", "pooler"}
_TABLE_KEYS = {"per-file-ignores", "roles", "rule-roles"}
_BOOL_KEYS = {"respect-gitignore"}
KNOWN_KEYS = _LIST_KEYS | _STR_KEYS | _TABLE_KEYS | _BOOL_KEYS


def config_from_mapping(
    data: Mapping[str, Any], *, root: str = ".", source: str | None = None
) -> Config:
    where = source or "configuration"
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown [tool.session-lint] key {unknown[0]!r}")
    values: dict[str, Any] = {"root": root, "source": source}
    for key, value in data.items():
        attr = key.replace("-", "_")
        if key in _LIST_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key!r} must be a list of strings")
            values[attr] = tuple(value)
        elif key in _STR_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {key!r} must be a string")
            values[attr] = value
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key!r} must be true or false")
            values[attr] = value
        elif key == "roles":
            values[attr] = _roles(value, where)
        elif key == "rule-roles":
            values[attr] = _rule_roles(value, where)
        else:  # per-file-ignores
            if not isinstance(value, dict) or not all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in value.values()
            ):
                raise ConfigError(f"{where}: {key!r} must map globs to lists of codes")
            values[attr] = tuple((str(k), tuple(v)) for k, v in value.items())
    # A misspelt code (SL1O1, letter O) selects or ignores nothing: an error, as on
    # the command line. Checked against the rule modules, so a new rule counts.
    codes = rule_codes()
    for key in ("select", "ignore", "extend-select"):
        for selector in data.get(key, ()):
            if unknown_selector(selector, codes):
                raise ConfigError(
                    f"{where}: {key!r}: unknown rule code or prefix {selector!r} (see --list-rules)"
                )
    for pattern, selectors in values.get("per_file_ignores", ()):
        for selector in selectors:
            if unknown_selector(selector, codes):
                raise ConfigError(
                    f"{where}: 'per-file-ignores.{pattern}': unknown rule code or prefix "
                    f"{selector!r} (see --list-rules)"
                )
    if values.get("pooler", "auto") not in POOLER_MODES:
        raise ConfigError(f"{where}: 'pooler' must be one of {', '.join(POOLER_MODES)}")
    for key in ("session_factory", "background_session_factory", "engine_factory"):
        target = values.get(key)
        if target is not None and (":" not in target or not all(target.partition(":")[::2])):
            raise ConfigError(
                f"{where}: {key.replace('_', '-')!r} must look like 'package.module:name'"
            )
    return Config(**values)


def _roles(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``[tool.session-lint.roles]`` merged over the defaults, in precedence order."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: 'roles' must map role names to lists of globs")
    for role, patterns in value.items():
        key = f"roles.{role}"
        if role == APP:
            raise ConfigError(
                f"{where}: {key!r} cannot be configured: a file is app when no other role claims it"
            )
        if role not in ROLES:
            raise ConfigError(f"{where}: {key!r}: unknown role (one of {', '.join(ROLES[:-1])})")
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigError(f"{where}: {key!r} must be a list of globs")
        for pattern in patterns:
            if pattern.startswith("<") and pattern not in ROLE_CHECKS:
                raise ConfigError(
                    f"{where}: {key!r}: unknown check {pattern!r} (one of {', '.join(ROLE_CHECKS)})"
                )
    return tuple(
        (role, tuple(value[role]) if role in value else defaults)
        for role, defaults in DEFAULT_ROLES
    )


def _rule_roles(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: 'rule-roles' must map rule codes to lists of roles")
    codes = rule_codes()
    out: list[tuple[str, tuple[str, ...]]] = []
    for code, roles in value.items():
        key = f"rule-roles.{code}"
        if code not in codes:
            raise ConfigError(f"{where}: {key!r}: unknown rule code {code!r} (a full code, SL101)")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{where}: {key!r} must be a list of roles")
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ConfigError(
                f"{where}: {key!r}: unknown role {unknown[0]!r} (one of {', '.join(ROLES)})"
            )
        out.append((code, tuple(dict.fromkeys(roles))))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def rule_codes() -> frozenset[str]:
    """Every rule's code, from the rule modules' file names (``SL101_direct_session.py``):
    importing the registry would import libcst, which a warm run never does. A
    test holds the registry to these modules."""
    rules = Path(__file__).resolve().parents[1] / "rules"
    return frozenset(p.name[:5] for p in rules.glob("SL[0-9][0-9][0-9]_*.py"))


def load_config_file(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    tool = raw.get("tool")
    if isinstance(tool, dict) and "session-lint" in tool:
        section = tool["session-lint"]
    elif path.name == "pyproject.toml" or "tool" in raw:
        # A file named with --config that holds other tools' settings and not ours
        # is a wrong file, not an empty config ("unknown key 'tool'" said nothing).
        raise ConfigError(f"{path}: no [tool.session-lint] table")
    else:  # a dedicated file (like ruff.toml) may hold the keys at top level
        section = raw
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.session-lint] must be a table")
    return config_from_mapping(section, root=str(path.parent), source=str(path))


def find_config_file(paths: Sequence[str]) -> Path | None:
    """The nearest pyproject.toml with a [tool.session-lint] table, walking up from
    the first linted path (or the working directory)."""
    start = Path(paths[0]) if paths and paths[0] != "-" else Path.cwd()
    start = start.resolve()
    if not start.is_dir():
        start = start.parent
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                raw = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{candidate}: invalid TOML: {exc}") from exc
            if "session-lint" in raw.get("tool", {}):
                return candidate
    return None


def load_config(
    paths: Sequence[str],
    explicit: str | None = None,
    *,
    cwd: str | None = None,
    use_cache: bool = True,
    index: bool = True,
    jobs: int = 1,
) -> Config:
    """The config for these paths, with its project index (``index=False``: without;
    the caller adds it with :func:`with_project_index`); ``cwd`` stands for the
    working directory (the analysis server answers for processes that have their own);
    ``jobs``: the processes that may build the index."""
    here = Path(cwd) if cwd else Path.cwd()
    if explicit:
        path = here / explicit
        if not path.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        config = load_config_file(path)
        return with_project_index(config, use_cache=use_cache, jobs=jobs) if index else config
    if cwd:
        paths = [str(here if p == "-" else here / p) for p in paths]
    found = find_config_file(paths)
    config = load_config_file(found) if found else Config(root=default_root(paths, here))
    return with_project_index(config, use_cache=use_cache, jobs=jobs) if index else config


_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


def default_root(paths: Sequence[str], cwd: Path) -> str:
    """The project root when no config file names one: the nearest directory above
    the first linted path that holds a project marker (pyproject.toml, setup.py,
    setup.cfg, .git); else the working directory when the path is inside it;
    else the path's own directory. Module names (``app.db``) are reckoned from it."""
    first = paths[0] if paths and paths[0] != "-" else None
    if first is None:
        return str(cwd)
    start = (cwd / first).resolve()
    base = start if start.is_dir() else start.parent
    for directory in (base, *base.parents):
        if any((directory / marker).exists() for marker in _PROJECT_MARKERS):
            return str(directory)
    real_cwd = cwd.resolve()
    if base == real_cwd or real_cwd in base.parents:
        return str(cwd)
    return str(base)


def with_selection(
    config: Config, select: tuple[str, ...] | None, ignore: tuple[str, ...] | None
) -> Config:
    """The config under a command line's (or an editor's) selection: ``select``
    replaces the configured one (``extend-select`` included), since the user named
    exactly what to run; ``ignore`` adds to the configured ignores."""
    if select is not None:
        config = config.with_overrides(select=select, extend_select=())
    if ignore is not None:
        config = config.with_overrides(ignore=(*config.ignore, *ignore))
    return config


def with_project_index(config: Config, *, use_cache: bool = True, jobs: int = 1) -> Config:
    """The config with the index of its project (see ``project_index``); without
    ``use_cache`` the index is neither read from nor written to the cache; ``jobs``
    processes may read the files (forked: only a command line asks for more than one)."""
    from session_lint.project.index import build_index

    patterns = (*config.exclude, *config.extend_exclude)

    def excluded(relative: str) -> bool:
        return any(glob_match(relative, p) for p in patterns)

    index = build_index(
        config.root, excluded, use_cache=use_cache, slow_calls=config.slow_calls, jobs=jobs
    )
    if any(
        glob_match(path, pattern)
        for path in index.engine_builders
        for pattern in config.engine_modules
    ):
        # The configured engine modules build the engine: other modules that build
        # one are strays for SL102, not engine modules.
        index = replace(index, engine_modules=())
    return replace(config, project=index)
