from __future__ import annotations

import libcst as cst

from session_lint.finding import Applicability, Fix, FixAvailability
from session_lint.fixes.edits import (
    dict_entry,
    dict_with,
    with_keyword,
    without_entries,
    without_keyword,
)
from session_lint.project.roles import ALL_ROLES
from session_lint.rules.base import Rule
from session_lint.semantics.execution_options import (
    DRIVER_CONNECT_ARGS,
    ENGINE_ARGUMENTS,
    INVENTED_SWITCHES,
)
from session_lint.semantics.mappings import (
    Entry,
    Mapping,
    int_value,
    read_mapping,
    resolve_mapping,
    string_value,
)
from session_lint.semantics.pooler import (
    PGBOUNCER_STARTUP_PARAMETERS,
    is_engine_call,
    pooler_expected,
)

_NOT_SETTINGS = frozenset(DRIVER_CONNECT_ARGS) | ENGINE_ARGUMENTS | INVENTED_SWITCHES

_DRIVER_MESSAGE = (
    "`{key}` is a driver connect argument, not a PostgreSQL setting: asyncpg sends every "
    "`server_settings` key to the server as a startup parameter, so every connect fails "
    '(direct: `UndefinedObjectError: unrecognized configuration parameter "{key}"`; '
    "through pgbouncer: `ProtocolViolationError: unsupported startup parameter: {key}`). "
    "Pass it at the top level of `connect_args`"
)
_OTHER_MESSAGE = (
    "`{key}` is not a PostgreSQL setting: asyncpg sends every `server_settings` key to the "
    "server as a startup parameter, so every connect fails "
    '(`UndefinedObjectError: unrecognized configuration parameter "{key}"`; through '
    "pgbouncer `ProtocolViolationError: unsupported startup parameter: {key}`). Remove it"
)
_POOLER_MESSAGE = (
    "`{key}` in `server_settings` behind a transaction pooler: pgbouncer refuses it as a "
    "startup parameter (`unsupported startup parameter: {key}`, every connect fails) or, "
    "when listed in `ignore_startup_parameters`, drops it silently; only `application_name`, "
    "`TimeZone`, `DateStyle`, `client_encoding` and `standard_conforming_strings` pass. "
    "Set it per role (`ALTER ROLE … SET {key} = …`) or with `SET LOCAL {key} = …` inside "
    "each transaction"
)


class BadServerSettings(Rule):
    """
    ## What it does
    Checks the keys of asyncpg's `server_settings` (usually inside
    `create_async_engine(..., connect_args={"server_settings": {...}})`):
    keys that are not PostgreSQL settings at all (`statement_cache_size`,
    `prepared_statement_cache_size`, `command_timeout`, … are asyncpg connect
    arguments), and, when a transaction pooler is expected, keys that pgbouncer
    refuses as startup parameters (`search_path`, `jit`, `options`,
    `statement_timeout`, …).

    ## Why is this bad?
    asyncpg sends each `server_settings` entry in the connection's startup packet.
    A key that is not a PostgreSQL setting makes every connect fail: measured with
    `server_settings={"statement_cache_size": "0"}`, PostgreSQL answers
    `UndefinedObjectError: unrecognized configuration parameter "statement_cache_size"`,
    and pgbouncer `ProtocolViolationError: unsupported startup parameter: statement_cache_size`.
    Under load it is worse than an error: waiters for the failing pool are not woken,
    and a 50-task run stalled 90 s on
    `QueuePool limit of size 5 overflow 10 reached, connection timed out`.
    pgbouncer (1.18) accepts only `application_name`, `TimeZone`, `DateStyle`,
    `client_encoding` and `standard_conforming_strings` as startup parameters;
    `search_path` or `jit` fail the same way behind it.

    ## Known problems
    Only keys known to be driver, engine or made-up settings are reported as "not a
    PostgreSQL setting"; other unknown names are left to PostgreSQL. A transaction
    pooler is expected when the `pooler` option says `"transaction"`, or a database
    URL in the file points at one (port 6543, a `pooler.supabase.com` host,
    `pgbouncer=true`).

    ## Example
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app@db/app",
        connect_args={"server_settings": {"statement_cache_size": "0"}},
    )
    ```

    Use instead:
    ```python
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        "postgresql+asyncpg://app@db/app",
        connect_args={"statement_cache_size": 0},
    )
    ```

    ## Options
    - `pooler`: `"transaction"` also checks keys against what pgbouncer accepts;
      `"session"` or `"none"` never does.

    ## Where it runs
    Every role (`app`, `script`, `test`, `migration`): a `server_settings` key that
    PostgreSQL or the pooler refuses fails every connection, a migration's and a test's
    as much as the app's.

    ## Fix safety
    Moving a driver argument from `server_settings` to the top level of
    `connect_args` (a numeric string such as `"0"` becomes the number the driver
    expects) is safe: with the key where it was, no connection can be opened at
    all. A key already set at the top level keeps that value. Keys pgbouncer
    refuses have no fix: where they should go (a role setting, `SET LOCAL`) is a
    decision about the database.

    ## References
    - asyncpg: `connect(server_settings=...)`
    - pgbouncer: startup parameters and `ignore_startup_parameters`
    """

    code = "SL203"
    name = "bad-server-settings"
    message = "`server_settings` key that every connect fails on"
    fix_availability = FixAvailability.SOMETIMES
    roles = ALL_ROLES  # see ## Where it runs
    tokens = ("server_settings",)

    def visit_Dict(self, node: cst.Dict) -> None:
        parent = read_mapping(self.ctx, node)
        if parent is None:
            return
        entry = parent.get("server_settings")
        if entry is not None:
            self._check(entry.value, parent, None)

    def visit_Call(self, node: cst.Call) -> None:
        for arg in node.args:
            if arg.keyword is not None and arg.keyword.value == "server_settings":
                self._check(arg.value, read_mapping(self.ctx, node), node)

    def _check(
        self, value: cst.BaseExpression, parent: Mapping | None, call: cst.Call | None
    ) -> None:
        settings = read_mapping(self.ctx, value)
        literal = settings is not None
        if settings is None:
            settings = resolve_mapping(self.ctx, value)
        if settings is None:
            return
        engine = self._engine_call()
        pooler = pooler_expected(self.ctx, engine)
        movable = self._movable(settings) if literal else {}
        fix = self._fix(settings, parent, call, movable) if movable else None
        for entry in settings.entries:
            key = entry.key
            if key in _NOT_SETTINGS:
                template = _DRIVER_MESSAGE if key in DRIVER_CONNECT_ARGS else _OTHER_MESSAGE
                self.report(
                    entry.key_node,
                    template.format(key=key),
                    fix=fix if key in movable else None,
                )
            elif pooler and key.lower() not in PGBOUNCER_STARTUP_PARAMETERS:
                self.report(entry.key_node, _POOLER_MESSAGE.format(key=key))

    def _engine_call(self) -> cst.Call | None:
        for node in reversed(self.ctx.ancestor_chain()):
            if isinstance(node, cst.Call) and is_engine_call(self.ctx, node):
                return node
        return None

    @staticmethod
    def _movable(settings: Mapping) -> dict[str, cst.BaseExpression]:
        """Driver keys whose value can be given to the driver as what it expects."""
        out: dict[str, cst.BaseExpression] = {}
        for entry in settings.entries:
            wanted = DRIVER_CONNECT_ARGS.get(entry.key)
            if wanted not in (int, float):
                continue
            converted = _number(entry)
            if converted is not None:
                out[entry.key] = converted
        return out

    def _fix(
        self,
        settings: Mapping,
        parent: Mapping | None,
        call: cst.Call | None,
        movable: dict[str, cst.BaseExpression],
    ) -> Fix | None:
        keys = set(movable)
        emptied = settings.complete and settings.keys() <= keys
        if parent is not None:
            container: cst.Dict | cst.Call = parent.node
            holder = parent.get("server_settings")
            assert holder is not None
            if emptied:
                new = without_entries(parent, {"server_settings"})
            else:
                replacement = holder.element.with_changes(value=without_entries(settings, keys))
                new = _replace_child(container, holder.element, replacement)
            present = parent.keys()
        elif call is not None:
            container = call
            if emptied:
                new = without_keyword(call, "server_settings")
            else:
                arg = next(
                    a for a in call.args if a.keyword and a.keyword.value == "server_settings"
                )
                replacement = arg.with_changes(value=without_entries(settings, keys))
                new = _replace_child(call, arg, replacement)
            present = {a.keyword.value for a in call.args if a.keyword is not None}
        else:
            return None
        for key, value in movable.items():
            if key in present:
                continue
            if isinstance(new, cst.Dict):
                new = dict_with(new, dict_entry(key, value))
            else:
                new = with_keyword(new, key, value)
        return Fix.replace(
            container,
            new,
            Applicability.SAFE,
            description="move driver arguments to the top level of connect_args",
        )


def _replace_child(
    container: cst.Dict | cst.Call, old: cst.CSTNode, new: cst.CSTNode
) -> cst.Dict | cst.Call:
    if isinstance(container, cst.Dict):
        return container.with_changes(elements=[new if e is old else e for e in container.elements])
    return container.with_changes(args=[new if a is old else a for a in container.args])


def _number(entry: Entry) -> cst.BaseExpression | None:
    value = entry.value
    if isinstance(value, (cst.Integer, cst.Float)):
        return value
    text = string_value(value)
    if text is None:
        return None
    text = text.strip()
    try:
        number = int(text)
    except ValueError:
        try:
            float(text)
        except ValueError:
            return None
        return cst.Float(text)
    literal = cst.Integer(str(number))
    return literal if int_value(literal) == number else None
