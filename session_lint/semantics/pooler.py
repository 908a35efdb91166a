"""Will this engine meet a transaction pooler, and does it use asyncpg?

Evidence, strongest first: the ``pooler`` setting (``"transaction"`` says yes,
``"session"``/``"none"`` say no), then what the database URL literals give away:
port 6543 (Supabase's Supavisor transaction port), a ``pooler.supabase.com`` host,
or ``pgbouncer=true`` in the query. URLs are read from literals, f-strings and
concatenations of them, through names bound once (module constants); parts that
are not literal are holes, and a fact that depends on a hole is undecided.
URL text is parsed with ``urllib.parse`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qsl, urlsplit

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, Scope
from session_lint.core.walker import children
from session_lint.known import ASYNC_ENGINE_CONSTRUCTORS, ENGINE_CONSTRUCTORS

SUPAVISOR_TRANSACTION_PORT = 6543
POOLER_HOST_SUFFIXES = ("pooler.supabase.com",)
HOLE = "\ue000"  # stands for a part of the URL that is not a literal
_MAX_DEPTH = 6

# Startup parameters pgbouncer 1.18 tracks and accepts (src/varcache.c), compared
# case-insensitively; it refuses every other one with
# ``unsupported startup parameter`` unless listed in ``ignore_startup_parameters``.
PGBOUNCER_STARTUP_PARAMETERS = frozenset(
    {"datestyle", "client_encoding", "timezone", "standard_conforming_strings", "application_name"}
)


@dataclass(frozen=True)
class UrlText:
    """A URL as far as the source shows it: ``HOLE`` marks the non-literal parts."""

    text: str

    @property
    def decided(self) -> bool:
        return HOLE not in self.text

    @property
    def scheme(self) -> str | None:
        head, sep, _ = self.text.partition("://")
        if not sep or HOLE in head:
            return None
        return head.lower()

    @property
    def is_postgres(self) -> bool:
        scheme = self.scheme
        return scheme is not None and scheme.split("+", 1)[0] in ("postgresql", "postgres")

    @property
    def is_asyncpg(self) -> bool | None:
        """True/False when the scheme is literal, None when it is not."""
        scheme = self.scheme
        if scheme is None:
            return None
        return self.is_postgres and scheme.endswith("+asyncpg")

    def query(self) -> list[tuple[str, str]]:
        """Query parameters whose key and value are literal."""
        if "?" not in self.text:
            return []
        raw = self.text.split("?", 1)[1].split("#", 1)[0]
        return [(k, v) for k, v in parse_qsl(raw, keep_blank_values=True) if HOLE not in k + v]

    def pooler_evidence(self) -> bool:
        """Port 6543, a Supavisor pooler host or ``pgbouncer=true``, as far as literal."""
        if not self.is_postgres:
            return False
        try:
            parts = urlsplit(self.text)
        except ValueError:
            return False
        netloc = parts.netloc.rsplit("@", 1)[-1]
        for host_port in netloc.split(","):  # multi-host URLs
            host, _, port = host_port.rpartition(":")
            if port == str(SUPAVISOR_TRANSACTION_PORT):
                return True
            host = (host or host_port).lower().strip("[]")
            if host.endswith(POOLER_HOST_SUFFIXES) or host.endswith(
                tuple("." + s for s in POOLER_HOST_SUFFIXES)
            ):
                return True
        return any(
            k.lower() == "pgbouncer" and v.lower() in ("true", "1", "yes", "on")
            for k, v in self.query()
        )


def url_text(
    ctx: FileContext, expr: cst.BaseExpression, scope: Scope | None = None, depth: int = 0
) -> UrlText:
    return UrlText("".join(_parts(ctx, expr, scope or ctx.scope, depth)))


def _parts(ctx: FileContext, expr: cst.BaseExpression, scope: Scope, depth: int) -> list[str]:
    if depth > _MAX_DEPTH:
        return [HOLE]
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return [value] if isinstance(value, str) else [HOLE]
    if isinstance(expr, cst.ConcatenatedString):
        return _parts(ctx, expr.left, scope, depth) + _parts(ctx, expr.right, scope, depth)
    if isinstance(expr, cst.FormattedString):
        out: list[str] = []
        for part in expr.parts:
            if isinstance(part, cst.FormattedStringText):
                out.append(part.value)
            elif (
                isinstance(part, cst.FormattedStringExpression)
                and part.format_spec is None
                and part.conversion is None
            ):
                out.extend(_parts(ctx, part.expression, scope, depth + 1))
            else:
                out.append(HOLE)
        return out
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
        return _parts(ctx, expr.left, scope, depth + 1) + _parts(ctx, expr.right, scope, depth + 1)
    if isinstance(expr, cst.Name):
        bindings = scope.lookup(expr.value)
        if len(bindings) == 1:
            binding = bindings[0]
            if binding.kind is BindingKind.ASSIGNMENT and binding.value is not None:
                return _parts(ctx, binding.value, scope, depth + 1)
        return [HOLE]
    if isinstance(expr, cst.Integer):
        return [expr.value]
    return [HOLE]


def url_argument(call: cst.Call) -> cst.BaseExpression | None:
    """The URL an engine constructor gets: first positional argument or ``url=``."""
    for arg in call.args:
        if arg.keyword is None and not arg.star:
            return arg.value
        if arg.keyword is not None and arg.keyword.value == "url":
            return arg.value
    return None


def is_engine_call(ctx: FileContext, call: cst.Call) -> bool:
    return ctx.resolves_to(call.func, ENGINE_CONSTRUCTORS)


def is_async_engine_call(ctx: FileContext, call: cst.Call) -> bool:
    return ctx.resolves_to(call.func, ASYNC_ENGINE_CONSTRUCTORS)


def pooler_ruled_out(ctx: FileContext) -> bool:
    """The user said there is no transaction pooler."""
    return ctx.config.pooler in ("session", "none")


def pooler_expected(ctx: FileContext, call: cst.Call | None = None) -> bool:
    """Whether a transaction pooler is expected for ``call`` (an engine constructor)
    or, without a call, for the file: config first, then URL evidence."""
    mode = ctx.config.pooler
    if mode == "transaction":
        return True
    if mode in ("session", "none"):
        return False
    if call is not None:
        url = url_argument(call)
        if url is not None:
            text = url_text(ctx, url)
            if text.pooler_evidence():
                return True
            if text.decided:
                return False  # a literal URL without pooler evidence: a direct connection
    return file_has_pooler_url(ctx)


def file_has_pooler_url(ctx: FileContext) -> bool:
    """Any URL literal in the file (module constants included) that points at a
    transaction pooler. Computed once per file, only when a rule asks."""
    if ctx.pooler_url_in_file is None:
        ctx.pooler_url_in_file = _scan_for_pooler_urls(ctx)
    return ctx.pooler_url_in_file


def _scan_for_pooler_urls(ctx: FileContext) -> bool:
    module_scope = ctx.scope.module
    for statement in ctx.module.body:
        # The string literals of a statement the language server kept from the last
        # analysis are known (session_lint/core/memo.py); what they resolve to is not.
        if ctx.memo is None:
            strings = _strings_in(statement)
        else:
            strings = ctx.memo.strings.get(statement, "", partial(_strings_in, statement))
        for node in strings:
            if url_text(ctx, node, module_scope).pooler_evidence():
                return True
    return False


def _strings_in(statement: cst.CSTNode) -> list[cst.BaseExpression]:
    """The outermost string literals of ``statement`` (a concatenation, not its parts)."""
    out: list[cst.BaseExpression] = []
    stack: list[cst.CSTNode] = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString)):
            out.append(node)
            continue
        stack.extend(children(node))
    return out


