"""Newer syntax rewritten, line for line, into what CPython 3.9+ reads: the project
index's way to read a module only libcst parses (session_lint/syntax.py)."""

from __future__ import annotations

import ast
from contextlib import AbstractContextManager
from typing import TypeVar

import libcst as cst


def older_syntax(source: bytes, lock: AbstractContextManager[object]) -> str | None:
    """``source`` in older syntax, on the same lines; None when libcst cannot read it.
    ``lock`` serialises CPython's parser (``session_lint.syntax.AST_LOCK``)."""
    try:
        return cst.parse_module(source).visit(_OlderSyntax(lock)).code
    except Exception:  # libcst's parser and validation errors, RecursionError…
        return None


def _ast_accepts_expression(node: cst.BaseExpression, lock: AbstractContextManager[object]) -> bool:
    try:
        with lock:
            text = cst.Module([]).code_for_node(node)
            compile(
                "(" + text + "\n)", "<syntax>", "eval", dont_inherit=True, flags=ast.PyCF_ONLY_AST
            )
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _blank_string(node: cst.BaseExpression) -> cst.SimpleString:
    """An empty string on as many lines as ``node``."""
    newlines = cst.Module([]).code_for_node(node).count("\n")
    return cst.SimpleString('"""' + "\n" * newlines + '"""' if newlines else '""')


_NO_SPACE = cst.SimpleWhitespace("")


class _OlderSyntax(cst.CSTTransformer):
    """Newer syntax rewritten into what CPython 3.9+ reads, keeping every line."""

    def __init__(self, lock: AbstractContextManager[object]) -> None:
        super().__init__()
        self.lock = lock

    def leave_TypeAlias(
        self, original_node: cst.TypeAlias, updated_node: cst.TypeAlias
    ) -> cst.Assign:
        return cst.Assign([cst.AssignTarget(updated_node.name)], updated_node.value)

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        return _untyped(updated_node)

    def leave_ClassDef(
        self, original_node: cst.ClassDef, updated_node: cst.ClassDef
    ) -> cst.ClassDef:
        return _untyped(updated_node)

    def leave_FormattedString(
        self, original_node: cst.FormattedString, updated_node: cst.FormattedString
    ) -> cst.BaseExpression:
        if _ast_accepts_expression(original_node, self.lock):
            return updated_node
        return _blank_string(original_node)

    def leave_TemplatedString(
        self, original_node: cst.TemplatedString, updated_node: cst.TemplatedString
    ) -> cst.BaseExpression:
        return _blank_string(original_node)

    def leave_ExceptHandler(
        self, original_node: cst.ExceptHandler, updated_node: cst.ExceptHandler
    ) -> cst.ExceptHandler:
        return updated_node.with_changes(type=_parenthesized(updated_node.type))

    def leave_ExceptStarHandler(
        self, original_node: cst.ExceptStarHandler, updated_node: cst.ExceptStarHandler
    ) -> cst.ExceptStarHandler:
        return updated_node.with_changes(type=_parenthesized(updated_node.type))


_Generic = TypeVar("_Generic", cst.FunctionDef, cst.ClassDef)


def _untyped(node: _Generic) -> _Generic:
    """``def first[T](...)``/``class Box[T]:`` without their type parameters."""
    if node.type_parameters is None:
        return node
    return node.with_changes(type_parameters=None, whitespace_after_type_parameters=_NO_SPACE)


def _parenthesized(kind: cst.BaseExpression | None) -> cst.BaseExpression | None:
    """``except A, B:`` (3.14) is ``except (A, B):``."""
    if isinstance(kind, cst.Tuple) and not kind.lpar:
        return kind.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return kind
