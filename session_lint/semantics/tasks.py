"""Calls that run code later or elsewhere (tasks, executors, background work), and
which sessions an expression hands to them."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from session_lint.core.context import FileContext
from session_lint.core.scopes import BindingKind, target_names
from session_lint.core.walker import children
from session_lint.semantics.sessions import known_async_session

TASK_FUNCTIONS = frozenset(
    {
        "asyncio.create_task",
        "asyncio.ensure_future",
        "asyncio.tasks.create_task",
        "asyncio.tasks.ensure_future",
        "asyncio.run_coroutine_threadsafe",
    }
)
BACKGROUND_TASKS = frozenset(
    {
        "fastapi.BackgroundTasks",
        "fastapi.background.BackgroundTasks",
        "starlette.background.BackgroundTasks",
    }
)
EVENT_LOOP_GETTERS = frozenset(
    {
        "asyncio.get_event_loop",
        "asyncio.get_running_loop",
        "asyncio.new_event_loop",
        "asyncio.events.get_event_loop",
        "asyncio.events.get_running_loop",
    }
)
TASK_GROUPS = frozenset(
    {
        "asyncio.TaskGroup",
        "asyncio.taskgroups.TaskGroup",
        "anyio.create_task_group",
        "trio.open_nursery",
    }
)
LOOP_TYPES = frozenset({"asyncio.AbstractEventLoop", "asyncio.events.AbstractEventLoop"})
TASK_GROUP_TYPES = frozenset({"asyncio.TaskGroup", "anyio.abc.TaskGroup", "trio.Nursery"})


def _receiver_made_by(
    ctx: FileContext, receiver: cst.BaseExpression, makers: frozenset[str], types: frozenset[str]
) -> bool | None:
    """Whether ``receiver`` was made by one of ``makers`` (or annotated as ``types``);
    None when its origin cannot be seen (an unannotated parameter, an import)."""
    if isinstance(receiver, cst.Call):
        return ctx.resolves_to(receiver.func, makers)
    if not isinstance(receiver, cst.Name):
        return None
    bindings = ctx.scope.lookup(receiver.value)
    if not bindings:
        return None
    for b in bindings:
        if b.kind in (BindingKind.WITH, BindingKind.ASSIGNMENT) and isinstance(b.value, cst.Call):
            if ctx.resolves_to(b.value.func, makers):
                return True
        elif b.kind is BindingKind.PARAM:
            if b.annotation is None:
                return None
            if ctx.resolves_to(b.annotation, types | makers):
                return True
        elif b.kind is BindingKind.IMPORT:
            return None
    return False


def spawned_arguments(ctx: FileContext, call: cst.Call) -> tuple[str, list[cst.Arg]] | None:
    """For a call that schedules work to run later or elsewhere, a description of
    it and the arguments that work receives; None for any other call."""
    func = call.func
    if ctx.resolves_to(func, TASK_FUNCTIONS):
        name = next(iter(ctx.qualified_names(func))).rsplit(".", 1)[-1]
        return f"asyncio.{name}", list(call.args[:1])
    if not isinstance(func, cst.Attribute):
        return None
    method, receiver = func.attr.value, func.value
    if method == "add_task":
        made = _receiver_made_by(ctx, receiver, BACKGROUND_TASKS, BACKGROUND_TASKS)
        if made is not False:
            return "BackgroundTasks.add_task", list(call.args)
    elif method == "create_task":
        if _receiver_made_by(ctx, receiver, EVENT_LOOP_GETTERS, LOOP_TYPES):
            return "loop.create_task", list(call.args[:1])
        if _receiver_made_by(ctx, receiver, TASK_GROUPS, TASK_GROUP_TYPES):
            return "TaskGroup.create_task", list(call.args[:1])
    elif method == "start_soon":
        if _receiver_made_by(ctx, receiver, TASK_GROUPS, TASK_GROUP_TYPES) is not False:
            return "start_soon", list(call.args)
    elif method == "run_in_executor":
        if _receiver_made_by(ctx, receiver, EVENT_LOOP_GETTERS, LOOP_TYPES) is not False:
            return "loop.run_in_executor", list(call.args[1:])
    return None


def session_references(ctx: FileContext, node: cst.CSTNode) -> Iterator[cst.BaseExpression]:
    """Sessions ``node`` uses as values (``work(session)``, ``session.execute(q)``),
    not ones it only reads an attribute of (``session.info``). Names bound inside
    ``node`` (comprehension targets, lambda parameters) are not the outer sessions."""
    local = _locally_bound(node)
    stack: list[tuple[cst.CSTNode, bool]] = [(node, False)]
    while stack:
        current, attribute_base = stack.pop()
        if isinstance(current, (cst.Name, cst.Attribute)) and not attribute_base:
            head: cst.BaseExpression = current
            while isinstance(head, cst.Attribute):
                head = head.value
            if (
                isinstance(head, cst.Name)
                and head.value not in local
                and known_async_session(ctx, current)
            ):
                yield current
                continue
        if isinstance(current, cst.Arg):
            stack.append((current.value, False))
        elif isinstance(current, cst.Attribute):
            stack.append((current.value, True))
        elif isinstance(current, cst.Call):
            if isinstance(current.func, cst.Attribute):
                stack.append((current.func.value, False))  # session.execute(...) uses it
            else:
                stack.append((current.func, False))
            stack.extend((a, False) for a in reversed(current.args))
        elif isinstance(current, (cst.FunctionDef, cst.ClassDef)):
            continue
        else:
            stack.extend((kid, False) for kid in reversed(children(current)))


def _locally_bound(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.CompFor):
            names.update(target_names(current.target))
        elif isinstance(current, cst.Lambda):
            names.update(p.name.value for p in current.params.params)
        stack.extend(children(current))
    return names

