"""What a project can import: its declared dependencies and its own top-level modules.

A fix may add an import only of something the project can import: one of its own
modules, the standard library, or a distribution it declares. This module reads
the declarations (``pyproject.toml``: PEP 621, PEP 735 dependency groups, Poetry;
``setup.cfg``; ``Pipfile``; ``requirements*.txt`` and ``requirements/*.txt``; ``uv.lock`` and
``poetry.lock``) and lists the project's own top-level modules. It never imports
``packaging``: the linter depends on libcst and pathspec only, so requirement strings are read
by the small parser below. A file that cannot be read or parsed is skipped; it
never stops the linter.

Version caps are kept as strings: ``"0.29.0"`` means "at most 0.29.0" (from
``==0.29.0``, ``<=0.29.0``, ``===0.29.0`` or a lock's exact version) and
``"<0.30"`` means "below 0.30" (from ``<0.30``, ``~=0.29.0``, ``==0.29.*``, Poetry's
``^0.29``). :func:`capped_below` answers the question rules ask of them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from session_lint.project.facts import ProjectIndex

# Files larger than this are not dependency declarations (a lock of a few thousand
# packages is ~5 MB).
_MAX_BYTES = 16 * 1024 * 1024

# How many subdirectories of a top-level directory are looked into for .py files.
_MAX_SUBDIRS = 64

# Directories that are never the project's own modules.
SKIPPED_DIRS = frozenset(
    {
        ".venv",
        "venv",
        "node_modules",
        ".git",
        "build",
        "dist",
        "site-packages",
        "__pycache__",
        "__pypackages__",
    }
)

# Import name -> the distributions that ship it, where the name alone does not say
# (any other name is compared normalised: ``foo_bar`` ~ ``foo-bar``).
IMPORT_DISTRIBUTIONS: Mapping[str, tuple[str, ...]] = {
    "session_runtime": ("session-runtime",),
    "sqlalchemy": ("sqlalchemy",),
    "asyncpg": ("asyncpg",),
    "psycopg": ("psycopg", "psycopg-binary", "psycopg-c"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "sqlmodel": ("sqlmodel",),
    "fastapi": ("fastapi", "fastapi-slim"),
}

# Distribution -> distributions it always installs: a project that declares (or a
# file that imports) SQLModel can import SQLAlchemy.
INSTALLS: Mapping[str, tuple[str, ...]] = {
    "session-runtime": ("sqlalchemy", "asyncpg"),
    "sqlmodel": ("sqlalchemy",),
    "alembic": ("sqlalchemy",),
}

_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_SPECIFIER = re.compile(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*([^\s,;()]+)")
_VERSION = re.compile(
    r"^\s*v?(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)"
    r"(?P<rest>[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview|dev|post|rev|r)[-_.]?\d*.*)?\s*$",
    re.I,
)
_REQUIREMENT_FILE = re.compile(r"requirements.*\.txt", re.I)


# -- names ---------------------------------------------------------------------------
def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- versions ------------------------------------------------------------------------
VersionKey = tuple[int, tuple[int, ...], int]


def version_key(version: str) -> VersionKey | None:
    """A sort key for a PEP 440 version: (epoch, release without trailing zeros,
    phase) where a pre- or dev-release sorts before its release and a post-release
    after it. None when the text is not a version."""
    match = _VERSION.match(version.split("+", 1)[0])  # a local version sorts as its release
    if match is None:
        return None
    release = [int(part) for part in match.group("release").split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    rest = (match.group("rest") or "").lower()
    phase = 1
    if rest:
        phase = 0 if re.match(r"[-_.]?(a|b|c|rc|alpha|beta|pre|preview|dev)", rest) else 2
    return int(match.group("epoch") or 0), tuple(release), phase


def _cap_key(cap: str) -> tuple[VersionKey, int] | None:
    """Caps in order: below X (exclusive) sorts before at most X (inclusive)."""
    exclusive = cap.startswith("<")
    key = version_key(cap[1:] if exclusive else cap)
    return None if key is None else (key, 0 if exclusive else 1)


def lower_cap(a: str | None, b: str | None) -> str | None:
    """The tighter of two caps (None: no cap)."""
    if a is None or b is None:
        return b if a is None else a
    key_a, key_b = _cap_key(a), _cap_key(b)
    if key_a is None or key_b is None:
        return a if key_b is None else b
    return a if key_a <= key_b else b


def _higher_cap(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return None
    return b if lower_cap(a, b) == a else a


def _bump(release: list[int], index: int) -> str:
    """The release with the part at ``index`` incremented and everything after it dropped."""
    head = release[: index + 1]
    head[-1] += 1
    return ".".join(map(str, head))


def _release(version: str) -> list[int] | None:
    match = _VERSION.match(version)
    if match is None or match.group("epoch"):
        return None
    return [int(part) for part in match.group("release").split(".")]


def specifier_cap(operator: str, version: str) -> str | None:
    """The cap one PEP 440 specifier puts on versions, if any."""
    version = version.strip()
    if operator in ("==", "==="):
        if version.endswith(".*"):
            release = _release(version[:-2])
            return None if release is None else "<" + _bump(release, len(release) - 1)
        if operator == "==" and "+" in version:
            version = version.split("+", 1)[0]  # a local version: the release is the cap
        return version if version_key(version) is not None else None
    if operator == "<=":
        return version if version_key(version) is not None else None
    if operator == "<":
        return "<" + version if version_key(version) is not None else None
    if operator == "~=":
        release = _release(version)
        if release is None or len(release) < 2:
            return None
        return "<" + _bump(release, len(release) - 2)
    return None  # >=, >, !=


def _specifiers_cap(text: str) -> str | None:
    cap: str | None = None
    for part in text.split(","):
        match = _SPECIFIER.match(part)
        if match is not None:
            cap = lower_cap(cap, specifier_cap(match.group(1), match.group(2)))
    return cap


def parse_requirement(text: str) -> tuple[str, str | None] | None:
    """``"SQLAlchemy[asyncio] >=2.0, <2.1 ; python_version>='3.10'"`` ->
    ``("sqlalchemy", "<2.1")``: the normalised name and the cap, or None when the
    text does not start with a distribution name. Markers are ignored (a
    requirement declared for some environments is declared)."""
    match = _NAME.match(text)
    if match is None:
        return None
    name = normalize(match.group(1))
    rest = text[match.end() :].strip()
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None
        rest = rest[end + 1 :].strip()
    if rest.startswith("@"):
        return name, None  # a direct reference: declared, no version
    rest = rest.split(";", 1)[0].strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    if rest and not _SPECIFIER.match(rest):
        return None  # not a requirement (a path, a URL, a sentence)
    return name, _specifiers_cap(rest)


def poetry_cap(constraint: str) -> str | None:
    """The cap of a Poetry constraint: ``^0.29`` -> ``<0.30``, ``~1.2`` -> ``<1.3``,
    a bare ``0.29.0`` is exact; ``||`` alternatives cap at the highest."""
    cap: str | None = None
    for index, alternative in enumerate(constraint.split("||")):
        one = _poetry_single_cap(alternative)
        cap = one if index == 0 else _higher_cap(cap, one)
    return cap


def _poetry_single_cap(constraint: str) -> str | None:
    cap: str | None = None
    for part in re.split(r"\s*,\s*|\s+(?=[<>=!~^])", constraint.strip()):
        part = part.strip()
        if not part or part == "*":
            continue
        one: str | None
        if part.startswith("^"):
            release = _release(part[1:])
            if release is None:
                continue
            first = next((i for i, n in enumerate(release) if n), len(release) - 1)
            one = "<" + _bump(release, first)
        elif part.startswith("~") and not part.startswith("~="):
            release = _release(part[1:])
            if release is None:
                continue
            one = "<" + _bump(release, min(1, len(release) - 1))
        elif part[0].isdigit() or part[0] in "vV":
            one = specifier_cap("==", part)
        else:
            match = _SPECIFIER.match(part)
            one = specifier_cap(match.group(1), match.group(2)) if match else None
        cap = lower_cap(cap, one)
    return cap


# -- reading files -------------------------------------------------------------------
class _Collector:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.caps: dict[str, str] = {}
        self.found = False

    def add(self, name: str, cap: str | None) -> None:
        name = normalize(name)
        if not name:
            return
        self.names.add(name)
        if cap is not None:
            tighter = lower_cap(self.caps.get(name), cap)
            if tighter is not None:
                self.caps[name] = tighter

    def add_requirement(self, text: object) -> None:
        if isinstance(text, str):
            parsed = parse_requirement(text)
            if parsed is not None:
                self.add(*parsed)

    def add_requirements(self, items: object) -> None:
        if isinstance(items, list):
            for item in items:
                self.add_requirement(item)


def _read_text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return None
        return path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None


def _read_toml(path: Path) -> dict[str, Any] | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return None


def _table(data: object, *keys: str) -> dict[str, Any]:
    for key in keys:
        if not isinstance(data, dict):
            return {}
        data = data.get(key)
    return data if isinstance(data, dict) else {}


def _read_pyproject(root: Path, out: _Collector) -> None:
    data = _read_toml(root / "pyproject.toml")
    if data is None:
        return
    project = data.get("project")
    if isinstance(project, dict):
        dynamic = project.get("dynamic")
        # Dependencies computed at build time are declared elsewhere (if anywhere).
        if not (isinstance(dynamic, list) and "dependencies" in dynamic):
            out.found = True
        out.add_requirements(project.get("dependencies"))
        for items in _table(project, "optional-dependencies").values():
            out.add_requirements(items)
    groups = data.get("dependency-groups")
    if isinstance(groups, dict):  # PEP 735; ``{include-group = ...}`` entries add nothing new
        out.found = True
        for items in groups.values():
            out.add_requirements(items)
    tool = _table(data, "tool")
    poetry = tool.get("poetry")
    if isinstance(poetry, dict) and any(
        key in poetry for key in ("dependencies", "dev-dependencies", "group")
    ):
        out.found = True
        tables = [_table(poetry, "dependencies"), _table(poetry, "dev-dependencies")]
        tables += [_table(group, "dependencies") for group in _table(poetry, "group").values()]
        for table in tables:
            for name, spec in table.items():
                if normalize(name) != "python":
                    out.add(name, _poetry_spec_cap(spec))
    uv_dev = _table(tool, "uv").get("dev-dependencies")  # before PEP 735
    if isinstance(uv_dev, list):
        out.found = True
        out.add_requirements(uv_dev)
    for items in _table(tool, "pdm", "dev-dependencies").values():
        out.found = True
        out.add_requirements(items)


def _read_pipfile(root: Path, out: _Collector) -> None:
    data = _read_toml(root / "Pipfile")
    if data is None:
        return
    for section in ("packages", "dev-packages"):
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        out.found = True
        for name, spec in table.items():
            version = spec.get("version") if isinstance(spec, dict) else spec
            cap = _specifiers_cap(version) if isinstance(version, str) else None
            out.add(name, cap)


def _poetry_spec_cap(spec: object) -> str | None:
    if isinstance(spec, str):
        return poetry_cap(spec)
    if isinstance(spec, dict):
        version = spec.get("version")
        return poetry_cap(version) if isinstance(version, str) else None
    if isinstance(spec, list):  # one constraint per environment: the highest applies somewhere
        caps = [_poetry_spec_cap(item) for item in spec]
        cap = caps[0] if caps else None
        for one in caps[1:]:
            cap = _higher_cap(cap, one)
        return cap
    return None


def _read_setup_cfg(root: Path, out: _Collector) -> None:
    text = _read_text(root / "setup.cfg")
    if text is None:
        return
    import configparser  # only projects with a setup.cfg pay for it

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return
    if not parser.has_section("options"):
        return
    out.found = True
    values = [parser.get("options", "install_requires", fallback="")]
    if parser.has_section("options.extras_require"):
        values += [value for _, value in parser.items("options.extras_require")]
    for value in values:
        for line in value.splitlines():
            out.add_requirement(line.split(" #", 1)[0].strip())


def _requirement_lines(text: str) -> Iterator[str]:
    """Logical lines of a requirements file: continuations joined, comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        if line.lstrip().startswith("#"):
            continue
        line = re.split(r"\s#", line, maxsplit=1)[0].strip()
        if line:
            yield line
    if pending.strip():
        yield pending.strip()


def _read_requirements(path: Path, out: _Collector, *, follow: bool) -> bool:
    text = _read_text(path)
    if text is None:
        return False
    for line in _requirement_lines(text):
        if line.startswith("-"):
            option, _, value = line.partition(" ") if " " in line else line.partition("=")
            if follow and option in ("-r", "--requirement"):
                _read_requirements(path.parent / value.strip(), out, follow=False)
            elif follow and option.startswith("-r") and len(option) > 2:  # ``-rother.txt``
                _read_requirements(path.parent / option[2:], out, follow=False)
            continue  # -e, -c, --index-url, --hash…
        if "://" in line.split("@", 1)[0] or line.startswith((".", "/", "~")):
            continue  # a URL or a path: no name to declare
        out.add_requirement(line)
    return True


def _requirement_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for directory, pattern in ((root, _REQUIREMENT_FILE), (root / "requirements", None)):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith(".txt"):
                continue
            if pattern is not None and not pattern.fullmatch(entry.name):
                continue
            files.append(Path(entry.path))
    return files


_LOCK_NAME = re.compile(r'name\s*=\s*"([^"]*)"\s*$')
_LOCK_VERSION = re.compile(r'version\s*=\s*"([^"]*)"\s*$')


def _read_lock(path: Path, out: _Collector) -> None:
    """``[[package]]`` names and versions of ``uv.lock`` / ``poetry.lock``, read
    line by line: a lock is machine-written, and parsing it as TOML costs ~0.2 s
    per MB on every run."""
    text = _read_text(path)
    if text is None:
        return
    in_package = False
    name: str | None = None
    version: str | None = None
    read_any = False

    def flush() -> None:
        nonlocal read_any
        if name:
            read_any = True
            cap = version if version and version_key(version) is not None else None
            out.add(name, cap)

    for line in text.splitlines():
        if line.startswith("["):
            if in_package:
                flush()
            in_package = line.strip() == "[[package]]"
            name = version = None
            continue
        if not in_package:
            continue
        match = _LOCK_NAME.match(line)
        if match is not None and name is None:
            name = match.group(1)
            continue
        match = _LOCK_VERSION.match(line)
        if match is not None and version is None:
            version = match.group(1)
    if in_package:
        flush()
    if read_any:
        out.found = True


def declared_dependencies(
    root: Path,
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], bool]:
    """What the project at ``root`` declares: normalised distribution names (sorted),
    ``(name, cap)`` pairs with the tightest cap per name (sorted), and whether any
    dependency declaration was found at all."""
    out = _Collector()
    _read_pyproject(root, out)
    _read_setup_cfg(root, out)
    _read_pipfile(root, out)
    for path in _requirement_files(root):
        if _read_requirements(path, out, follow=True):
            out.found = True
    for lock in ("uv.lock", "poetry.lock"):
        _read_lock(root / lock, out)
    return tuple(sorted(out.names)), tuple(sorted(out.caps.items())), out.found


# -- the project's own modules -------------------------------------------------------
def _skipped(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS or name.endswith(".egg-info")


def _holds_python(directory: str, depth: int) -> bool:
    """Whether ``directory`` holds a ``.py`` file, directly or ``depth`` levels below
    (in the first ``_MAX_SUBDIRS`` subdirectories: a data directory is not a package)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return False
    if any(e.name.endswith(".py") and _is_file(e) for e in entries):
        return True
    if depth <= 0:
        return False
    subdirs = [e for e in entries if not _skipped(e.name) and _is_dir(e)]
    subdirs.sort(key=lambda e: e.name)
    return any(_holds_python(e.path, depth - 1) for e in subdirs[:_MAX_SUBDIRS])


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _modules_in(directory: Path) -> Iterator[str]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.endswith(".py") and _is_file(entry):
            stem = name[:-3]
            if stem.isidentifier() and stem != "__init__":
                yield stem
        elif _is_dir(entry) and name.isidentifier() and not _skipped(name):
            # A package, or a namespace package: .py files in it or one level below.
            if _holds_python(entry.path, depth=1):
                yield name


def local_modules(root: Path) -> tuple[str, ...]:
    """Top-level modules and packages of the project at ``root`` (and ``root/src``),
    sorted."""
    names = set(_modules_in(root))
    names.update(_modules_in(root / "src"))
    return tuple(sorted(names))


# -- the question fixes ask ----------------------------------------------------------
def distributions_for(module: str) -> tuple[str, ...]:
    """Normalised names of the distributions that ship ``module``'s top-level package."""
    top = module.partition(".")[0]
    return IMPORT_DISTRIBUTIONS.get(top.lower(), (normalize(top),))


def installed_with(distributions: Iterable[str]) -> frozenset[str]:
    """``distributions`` and the ones they always install."""
    found = set(distributions)
    for dist in tuple(found):
        found.update(INSTALLS.get(dist, ()))
    return frozenset(found)


def can_import_module(index: ProjectIndex, module: str) -> bool:
    """Whether code in the project can import ``module`` (dotted, absolute): it is
    one of the project's own modules, the standard library, or a declared
    distribution ships it (or always installs the one that does)."""
    top = module.partition(".")[0]
    if not top:
        return False  # a relative import: resolved against the file, not the project
    if top in index.local_modules or top in sys.stdlib_module_names:
        return True
    installed = installed_with(index.dependencies)
    return any(dist in installed for dist in distributions_for(top))


def implied_by_import(module: str, imported: str) -> bool:
    """Whether a file that imports ``imported`` can also import ``module``: same
    top-level package, or the distribution shipping ``imported`` always installs
    the one shipping ``module`` (``session_runtime`` brings ``sqlalchemy``)."""
    top, other = module.partition(".")[0], imported.partition(".")[0]
    if not top or not other:
        return False
    if top == other:
        return True
    installed = installed_with(distributions_for(other))
    return any(dist in installed for dist in distributions_for(top))


def unimportable_hint(module: str, setting: str | None = None) -> str:
    """What a finding's message adds when its fix would import ``module`` and the
    project cannot: the fix is left out, and the message says how to get it."""
    top = module.partition(".")[0]
    if setting is None:
        return f"; `{top}` is not a declared dependency: declare it to get a fix"
    return (
        f"; `{top}` is not a declared dependency: set `{setting}` in [tool.session-lint] "
        "to your project's factory to get a fix"
    )


def capped_below(index: ProjectIndex, distribution: str, version: str) -> bool:
    """Whether every version of ``distribution`` the project allows is lower than
    ``version`` (``asyncpg==0.29.0`` and ``asyncpg<0.32`` are below 0.32;
    ``asyncpg<=0.32`` and an uncapped asyncpg are not)."""
    cap = version_cap(index, distribution)
    limit = version_key(version)
    key = _cap_key(cap) if cap is not None else None
    if key is None or limit is None:
        return False
    bound, inclusive = key
    return bound < limit if inclusive else bound <= limit


# The first asyncpg release with which ``statement_cache_size=0`` alone is correct
# behind a transaction pooler (FACTS: 0.27-0.30 fail ~65 %, 0.31 breaks streaming
# over ENUM columns).
POOLER_SAFE_ASYNCPG = "0.32"


def asyncpg_too_old_for_pooler(index: ProjectIndex) -> bool:
    """Whether the project keeps asyncpg below the first pooler-safe release."""
    return capped_below(index, "asyncpg", POOLER_SAFE_ASYNCPG)


def version_cap(index: ProjectIndex, distribution: str) -> str | None:
    """The cap the project puts on ``distribution``, as stored (``"0.29.0"``, ``"<0.30"``)."""
    name = normalize(distribution)
    return next((cap for dist, cap in index.version_caps if dist == name), None)


def describe_cap(cap: str) -> str:
    """``"<0.30"`` -> ``"below 0.30"``; ``"0.29.0"`` -> ``"at most 0.29.0"``."""
    return f"below {cap[1:]}" if cap.startswith("<") else f"at most {cap}"


def dependency_facts(root: Path) -> dict[str, Any]:
    """Keyword arguments for :class:`~session_lint.project.index.ProjectIndex`:
    ``local_modules``, ``dependencies``, ``version_caps`` and ``dependencies_known``."""
    names, caps, found = declared_dependencies(root)
    return {
        "local_modules": local_modules(root),
        "dependencies": names,
        "version_caps": caps,
        "dependencies_known": found,
    }
