"""The names through which the project reaches a scoped session's ``.remove``
(``ProjectIndex.scoped_removals``, read by SL407).

For every ``X.remove`` in a file, called without arguments or not called
(``await Session.remove()``, ``stack.push_async_callback(Session.remove)``), the
last name of the receiver (``self.scoped.remove()`` gives ``scoped``,
``db.Session.remove()`` gives ``Session``); ``list.remove(item)`` takes an
argument and is not one. ``X.registry.clear()`` drops the entry as ``remove()``
does (without closing) and counts too. Then, across the project, the names those
stand for: an import alias (``from app.db import Session as S``), an assignment
(``self.scoped = Session``) or a keyword argument (``Database(scoped=Session)``)
whose target is such a name adds the name it was given.

Generous on purpose: read from the bytes with regular expressions, so a match in
a comment or a string only adds a name, and a name in this set only keeps SL407
quiet. Cheap: files are searched for the few names found, not parsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# ``.remove()``, ``.remove`` (not called), ``.registry.clear()``; not
# ``.remove(item)``, ``remove_all`` or ``removeprefix``.
_REMOVE = re.compile(rb"\.[ \t]*(?:remove|registry[ \t]*\.[ \t]*clear)\b(?![ \t]*\([ \t]*[^ \t)])")
_NAME = rb"[A-Za-z_][A-Za-z0-9_]*"
_IDENTIFIER = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = frozenset(b" \t\r\n\\")
_MAX_ROUNDS = 6  # aliases of aliases: a few hops deep


def removal_names(source: bytes) -> frozenset[str]:
    """The names through which ``source`` alone reaches ``.remove``."""
    return _closure(_receivers(source), [source])


def learn_removals(files: Iterable[tuple[str, Path]]) -> tuple[str, ...]:
    """``ProjectIndex.scoped_removals`` of the project's ``(relative, path)`` files."""
    sources: list[bytes] = []
    receivers: set[str] = set()
    for _, path in files:
        try:
            source = path.read_bytes()
        except OSError:
            continue
        sources.append(source)
        receivers |= _receivers(source)
    return tuple(sorted(_closure(receivers, sources))) if receivers else ()


def _receivers(source: bytes) -> set[str]:
    if b"remove" not in source and b"clear" not in source:
        return set()
    found: set[str] = set()
    for match in _REMOVE.finditer(source):
        name = _name_before(source, match.start())
        if name:
            found.add(name)
    return found


def _name_before(source: bytes, end: int) -> str:
    """The identifier that ends at ``end``, spaces and line breaks between skipped."""
    while end > 0 and source[end - 1] in _SPACE:
        end -= 1
    start = end
    while start > 0 and source[start - 1] in _IDENTIFIER:
        start -= 1
    name = source[start:end]
    return name.decode("ascii") if name and not name[:1].isdigit() else ""


def _closure(receivers: Iterable[str], sources: list[bytes]) -> frozenset[str]:
    """The receivers and, transitively, every name one of them stands for in
    ``sources``."""
    found = set(receivers)
    new = set(found)
    for _ in range(_MAX_ROUNDS):
        if not new:
            break
        names = sorted(new)
        new = set()
        words = [n.encode("ascii") for n in names]
        pattern = b"|".join(re.escape(w) for w in words)
        # ``<X> as <name>``: the name before ``as`` is read backwards.
        imported = re.compile(rb"\bas[ \t]+(?:" + pattern + rb")\b")
        # ``<name> = X.Y``, ``self.<name>: T = Y``, ``f(<name>=Y)``.
        assigned = re.compile(
            rb"\b(?:" + pattern + rb")[ \t]*(?::[^=\n]*)?=(?!=)[ \t]*"
            rb"((?:" + _NAME + rb"[ \t]*\.[ \t]*)*" + _NAME + rb")[ \t]*(?=[,)#\r\n]|$)",
            re.M,
        )
        for source in sources:
            if not any(w in source for w in words):
                continue
            for match in imported.finditer(source):
                new.add(_name_before(source, match.start()))
            for match in assigned.finditer(source):
                new.add(match.group(1).rsplit(b".", 1)[-1].strip().decode("ascii"))
        new.discard("")
        new -= found
        found |= new
    return frozenset(found)
