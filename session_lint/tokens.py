"""Prefilter tokens: how a rule's strings are looked for in a file's bytes.

A token is found anywhere in the bytes, as a substring (``Session`` is in
``AsyncSession``), unless it is marked with :func:`whole_name`: then only where it
stands as a whole identifier. A configured session name such as ``db`` is only
ever compared with whole names (a parameter, ``self.db``), while as a substring
it is in ``pdb``, ``dbapi`` and half of SQLAlchemy's own source.
"""

from __future__ import annotations

import re

_WHOLE = "="  # in no identifier, and no token starts with it
_NAME_CHAR = (
    rb"[A-Za-z0-9_]"  # a non-ASCII neighbour counts as a boundary: more passes, never fewer
)


def whole_name(name: str) -> str:
    """``name`` as a token found only as a whole identifier."""
    return _WHOLE + name


def pattern(token: str) -> bytes:
    """The regular expression (on bytes) that finds ``token``."""
    if token.startswith(_WHOLE):
        word = re.escape(token[len(_WHOLE) :].encode())
        return rb"(?<!" + _NAME_CHAR + rb")" + word + rb"(?!" + _NAME_CHAR + rb")"
    return re.escape(token.encode())
