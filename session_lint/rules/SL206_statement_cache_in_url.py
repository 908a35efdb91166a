from __future__ import annotations

import libcst as cst

from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.fixes.edits import dict_entry, repr_str, with_entry, with_keyword
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.mappings import has_star_kwargs, keyword, read_mapping
from session_lint.semantics.pooler import UrlText, is_async_engine_call, url_argument

_CACHE_KEYS = ("statement_cache_size", "prepared_statement_cache_size")

_MESSAGE = (
    "`statement_cache_size` in the database URL: SQLAlchemy hands asyncpg the string "
    "`\"{value}\"`, and every query fails with `TypeError: '<' not supported between "
    "instances of 'str' and 'int'` (directly and behind a pooler). Pass it as a number: "
    '`create_async_engine(url, connect_args={{"statement_cache_size": {value}}})`'
)


class StatementCacheInUrl(Rule):
    """
    ## What it does
    Finds `statement_cache_size` in the query string of an asyncpg database URL
    (`postgresql+asyncpg://…?statement_cache_size=0`), the form forum answers give
    for pgbouncer.

    ## Why is this bad?
    SQLAlchemy's asyncpg dialect passes URL query parameters to `asyncpg.connect()`
    as strings, and converts only `prepared_statement_cache_size` to a number.
    asyncpg then compares the string `"0"` with a number on the first query: every
    query fails with `TypeError: '<' not supported between instances of 'str' and 'int'`,
    directly as well as through a pooler (measured: 100 % of transactions).

    ## Known problems
    Only URLs whose scheme is literally `postgresql+asyncpg` (or `postgres+asyncpg`)
    are checked, or any PostgreSQL URL passed straight to `create_async_engine`.
    `prepared_statement_cache_size` alone in the URL works (SQLAlchemy converts it)
    and is not reported; beside `statement_cache_size` it moves with it.

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app@pgbouncer:6432/app?statement_cache_size=0"
    )
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app@pgbouncer:6432/app",
        connect_args={"statement_cache_size": 0},
    )
    ```

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): asyncpg gets a string for
    `statement_cache_size` wherever the URL is written.

    ## Fix safety
    When the URL literal is the URL argument of `create_async_engine` in the same
    call and the value is an integer, the fix removes the parameters from the
    query string and passes them in `connect_args` as integers (an existing
    `connect_args` entry keeps its value). It is safe: with the parameter in the
    URL no query can run at all. URLs defined elsewhere are reported without a fix.
    """

    code = "SL206"
    name = "statement-cache-in-url"
    message = _MESSAGE.format(value="0")
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("statement_cache_size",)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        value = node.evaluated_value
        if not isinstance(value, str) or "statement_cache_size" not in value:
            return
        self._check(node, UrlText(value))

    def visit_FormattedString(self, node: cst.FormattedString) -> None:
        texts = [p.value for p in node.parts if isinstance(p, cst.FormattedStringText)]
        if not any("statement_cache_size" in t for t in texts):
            return
        # Holes stand for the non-literal parts; the query must be literal to count.
        text = "".join(
            p.value if isinstance(p, cst.FormattedStringText) else "\ue000" for p in node.parts
        )
        self._check(node, UrlText(text))

    def _check(self, node: cst.SimpleString | cst.FormattedString, url: UrlText) -> None:
        call = self._engine_call_with_url(node)
        if not (url.is_asyncpg or (call is not None and url.is_postgres)):
            return
        params = dict(url.query())
        value = params.get("statement_cache_size")
        if value is None:
            return
        fix = self._fix(node, call, params) if call is not None else None
        self.report(node, _MESSAGE.format(value=value), fix=fix)

    def _engine_call_with_url(self, node: cst.CSTNode) -> cst.Call | None:
        """The ``create_async_engine`` call whose URL argument is ``node`` itself."""
        ancestors = self.ctx.ancestor_chain()
        if len(ancestors) < 2:
            return None
        call = ancestors[-2]
        if (
            isinstance(ancestors[-1], cst.Arg)
            and isinstance(call, cst.Call)
            and is_async_engine_call(self.ctx, call)
            and url_argument(call) is node
        ):
            return call
        return None

    def _fix(
        self,
        node: cst.SimpleString | cst.FormattedString,
        call: cst.Call,
        params: dict[str, str],
    ) -> Fix | None:
        moved: dict[str, int] = {}
        for key in _CACHE_KEYS:
            if key in params:
                try:
                    moved[key] = int(params[key])
                except ValueError:
                    return None
        new_url = _strip_query(node, set(moved))
        if new_url is None:
            return None
        new_call = call.with_changes(
            args=[a.with_changes(value=new_url) if a.value is node else a for a in call.args]
        )
        arg = keyword(new_call, "connect_args")
        if arg is None:
            if has_star_kwargs(call):
                return None
            connect = cst.Dict([dict_entry(k, cst.Integer(str(v))) for k, v in moved.items()])
            new_call = with_keyword(new_call, "connect_args", connect)
        else:
            mapping = read_mapping(self.ctx, arg.value)
            if mapping is None:
                return None
            new_mapping: cst.BaseExpression = mapping.node
            for key, number in moved.items():
                if mapping.get(key) is not None:
                    continue  # the explicit connect_args value is what asyncpg gets
                current = read_mapping(self.ctx, new_mapping)
                assert current is not None
                new_mapping = with_entry(current, key, cst.Integer(str(number)))
            new_call = with_keyword(new_call, "connect_args", new_mapping)
        return Fix.replace(
            call,
            new_call,
            Applicability.SAFE,
            description="move statement_cache_size to connect_args",
        )


def _drop_params(query: str, keys: set[str]) -> str:
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] not in keys]
    return "&".join(kept)


def _strip_query(
    node: cst.SimpleString | cst.FormattedString, keys: set[str]
) -> cst.BaseExpression | None:
    """The URL literal without ``keys`` in its query string (text surgery, so the
    rest of the URL stays byte for byte)."""
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        if not isinstance(value, str) or "\\" in node.value:
            return None
        base, _, query = value.partition("?")
        query, hash_, fragment = query.partition("#")
        rest = _drop_params(query, keys)
        text = base + (f"?{rest}" if rest else "") + (hash_ + fragment)
        quote = node.quote
        if quote in ('"', "'") and quote not in text:
            return node.with_changes(value=f"{node.prefix}{quote}{text}{quote}")
        return cst.SimpleString(repr_str(text))
    last = node.parts[-1] if node.parts else None
    if not isinstance(last, cst.FormattedStringText) or "?" not in last.value:
        return None  # the query string must be in the last literal part
    base, _, query = last.value.partition("?")
    if "#" in query or "{" in query:
        return None
    rest = _drop_params(query, keys)
    new_last = last.with_changes(value=base + (f"?{rest}" if rest else ""))
    return node.with_changes(parts=[*node.parts[:-1], new_last])
