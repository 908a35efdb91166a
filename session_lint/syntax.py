"""Which parser decides that a file is Python, and how the index reads newer syntax.

Only libcst, the parser the analysis uses, decides whether a file parses. CPython's
own parser is about ten times faster and is used first wherever speed matters, but
it is the running interpreter's: on a 3.11 linter it rejects a ``type X = ...``
statement, PEP 695 generics (``def f[T](x: T)``), 3.12 f-strings that reuse their
quote, 3.14's ``except A, B:`` and template strings. Its failure therefore means
"ask libcst", never "broken" (docs/project-index.md, "Newer syntax").

The project index works on ``ast`` trees. A module only libcst can read is
rewritten, line for line, into the syntax this interpreter knows before ``ast``
reads it: ``type X = Y`` becomes ``X = Y``, type parameters are dropped, an
f-string or template string the old parser rejects becomes ``""``, and
``except A, B:`` gets its parentheses. None of these carries a fact the index
learns, and each keeps the statement on its lines, so positions stay right.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from collections.abc import Iterable

_ONLY_AST = ast.PyCF_ONLY_AST
# CPython 3.11's AST constructor keeps its recursion depth in shared state: two
# threads parsing at once (the corpus bench, a resident process) fail with
# "SystemError: AST constructor recursion depth mismatch". One parse at a time.
AST_LOCK = threading.Lock()
# Digests of the sources CPython's parser accepted in this process (or in the
# index's workers, which hand theirs back): a file the index parsed needs no
# second parse to show that it compiles (``session_lint.analyzer``, the files no
# rule reads). Bounded: a resident process sees many versions of a file.
_PARSED: set[bytes] = set()
_MAX_PARSED = 100_000


def digest(source: bytes) -> bytes:
    return hashlib.blake2b(source, digest_size=16).digest()


def remember_parsed(digests: Iterable[bytes]) -> None:
    if len(_PARSED) > _MAX_PARSED:
        _PARSED.clear()
    _PARSED.update(digests)


def parsed_digest(source: bytes) -> bytes | None:
    """The digest of ``source`` when CPython's parser accepted it here, else None."""
    found = digest(source)
    return found if found in _PARSED else None


def compiles(source: bytes | str) -> bool:
    """CPython's parser accepts ``source`` (the fast answer; False is not "broken")."""
    try:
        with AST_LOCK:
            compile(source, "<syntax>", "exec", dont_inherit=True, flags=_ONLY_AST)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return False
    return True


def parses(source: bytes | str) -> bool:
    """Whether ``source`` is Python: CPython's parser first, libcst when it refuses."""
    if compiles(source):
        return True
    import libcst as cst  # only where CPython's parser refused: warm runs never get here

    try:
        cst.parse_module(source)
    except Exception:  # libcst raises its own errors and SyntaxError, ValueError…
        return False
    return True


def parse_ast(source: bytes, filename: str) -> ast.Module | None:
    """``ast.parse``, or, for syntax newer than this interpreter, the ``ast`` of the
    module rewritten into older syntax (see the module docstring); None when neither
    parser reads it."""
    try:
        with AST_LOCK:
            tree = ast.parse(source, filename)
    except (ValueError, RecursionError, MemoryError):
        return None
    except SyntaxError:
        pass
    else:
        remember_parsed((digest(source),))
        return tree
    from session_lint.older_syntax import older_syntax  # libcst: only on this path

    older = older_syntax(source, AST_LOCK)
    if older is None:
        return None
    try:
        with AST_LOCK:
            return ast.parse(older, filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
