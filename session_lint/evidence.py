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

from session_lint.config import Config
from session_lint.project_index import absolute_import, module_name


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
    if _SQLALCHEMY_IMPORT.search(source):
        return True
    project = config.project
    exported = project.exported_names
    if not exported:
        return False
    evidence_modules = frozenset(project.evidence_modules)
    current, is_package = module_of(config.relative(path))
    for match in _FROM_IMPORT.finditer(source):
        module = absolute_import(match.group(1).decode("ascii", "replace"), current, is_package)
        names = re.findall(rb"\w+", match.group(2))
        for raw in names:
            name = raw.decode("ascii", "replace")
            if name == "as":
                continue
            full = f"{module}.{name}"
            if full in project.types or full in project.factories or full in evidence_modules:
                return True
    for match in _IMPORT.finditer(source):
        for raw in re.findall(rb"[\w.]+", match.group(1)):
            if raw.decode("ascii", "replace") in evidence_modules:
                return True
    return False
