"""Evidence of SQLAlchemy in a file, decided from its bytes before any parse.

A name proves nothing on its own: ``session`` is as often a websocket's, an
HTTP client's or a browser's as SQLAlchemy's. So a rule that reasons from names
(``session-names``, a parameter called ``db``) may fire only in a file that
imports ``sqlalchemy``/``sqlmodel``, or one of the project's session types or
factories (the project index knows them), or a module that exports them. A file
without evidence gets no finding but SL000, and is not parsed.
"""

from __future__ import annotations

import functools
import re

from session_lint.project.config import Config
from session_lint.project.modules import absolute_import, module_name


@functools.lru_cache(maxsize=4096)
def module_of(relative: str) -> tuple[str, bool]:
    """The dotted module name of a path relative to the project root, and whether
    it is a package (``__init__.py``)."""
    return module_name(relative) or "", relative.endswith("__init__.py")


_SQLALCHEMY_IMPORT = re.compile(rb"\b(?:from|import)[ \t]+(?:sqlalchemy|sqlmodel)\b")
_FROM_IMPORT = re.compile(rb"^[ \t]*from[ \t]+([.\w]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)", re.M)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([\w., \t]+)", re.M)


def has_evidence(source: bytes, path: str, config: Config) -> bool:
    """Whether the file can hold a SQLAlchemy session, factory, engine or
    connection at all: it imports ``sqlalchemy``/``sqlmodel``, or imports one of
    the project's session types or factories, or a module that exports them.
    Without evidence, names (``session``, ``get_session``) prove nothing."""
    # ``in`` first: most files name neither, and it is far cheaper than the search.
    if (b"sqlalchemy" in source or b"sqlmodel" in source) and _SQLALCHEMY_IMPORT.search(source):
        return True
    if _imports_configured_factory(source, config):
        return True
    evidence_modules, named, importers = _evidence_of(config)
    if not importers:
        return False
    current, is_package = module_of(config.relative(path))
    for match in _FROM_IMPORT.finditer(source):
        module = absolute_import(match.group(1).decode("ascii", "replace"), current, is_package)
        if module not in importers:
            continue  # neither an evidence module nor one that holds a type or factory
        for raw in re.findall(rb"\w+", match.group(2)):
            name = raw.decode("ascii", "replace")
            if name != "as" and (module in evidence_modules or f"{module}.{name}" in named):
                return True
    for match in _IMPORT.finditer(source):
        for raw in re.findall(rb"[\w.]+", match.group(1)):
            if raw.decode("ascii", "replace") in evidence_modules:
                return True
    return False


@functools.lru_cache(maxsize=16)
def _evidence_of(config: Config) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """The project's evidence modules; what an import names to be evidence (those
    modules, the session types and factories); and the modules an import of
    evidence is from (those modules, and the modules that hold what it names): an
    import from any other module is not looked at name by name."""
    project = config.project
    modules = frozenset(project.evidence_modules)
    named = frozenset({*modules, *project.types, *project.factories})
    return modules, named, modules | {name.rpartition(".")[0] for name in named}


def _imports_configured_factory(source: bytes, config: Config) -> bool:
    """An import from the module of a configured factory (``session_runtime`` by
    default, or the team's own ``app.db.session``): what the fixes rewrite toward."""
    for module in _configured_modules(config):
        if module.encode() in source and re.search(
            rb"\b(?:from|import)[ \t]+" + re.escape(module.encode()) + rb"\b", source
        ):
            return True
    return False


@functools.lru_cache(maxsize=16)
def _configured_modules(config: Config) -> tuple[str, ...]:
    modules: set[str] = set()
    for target in (
        config.session_factory,
        config.background_session_factory,
        config.engine_factory,
    ):
        module = target.partition(":")[0]
        if module:
            modules.add(module)
    return tuple(sorted(modules))
