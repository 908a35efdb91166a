from __future__ import annotations

import libcst as cst

from session_lint.core.prefilter import SESSION
from session_lint.finding import Import
from session_lint.project.roles import APP_AND_SCRIPT
from session_lint.rules.base import Rule
from session_lint.semantics.tasks import session_references, spawned_arguments


class SessionEscapesToTask(Rule):
    """
    ## What it does
    Finds a session handed to work that runs later or elsewhere:
    `BackgroundTasks.add_task`, `asyncio.create_task`/`ensure_future`,
    `loop.create_task`, `TaskGroup.create_task`, `loop.run_in_executor`, anyio's
    `start_soon` — as an argument, or inside the coroutine passed
    (`asyncio.create_task(notify(session))`).

    ## Why is this bad?
    A session belongs to the code that opened it. A FastAPI background task runs
    after the response is sent, when the request's session has been closed: its
    queries fail or silently reopen a connection nobody closes. A task created with
    `create_task` runs concurrently with the code that created it, and an
    `AsyncSession` does not allow concurrent use:
    `sqlalchemy.exc.InvalidRequestError: This session is provisioning a new
    connection; concurrent operations are not permitted`. An executor runs it on
    another thread, which a session does not support either.

    The task should open its own session, from the background pool so batch work
    cannot starve request handlers of connections.

    ## Example
    ```python
    from fastapi import BackgroundTasks
    from sqlalchemy.ext.asyncio import AsyncSession

    async def send_welcome(session: AsyncSession, user_id): ...

    async def register(session: AsyncSession, tasks: BackgroundTasks, user_id):
        tasks.add_task(send_welcome, session, user_id)
    ```

    Use instead:
    ```python
    from fastapi import BackgroundTasks
    from session_runtime import get_background_session

    async def send_welcome(user_id):
        async with get_background_session() as session:
            ...

    async def register(tasks: BackgroundTasks, user_id):
        tasks.add_task(send_welcome, user_id)
    ```

    ## Options
    - `background-session-factory`

    ## Where it runs
    `app` and `script` files, not `test` or `migration` ones: a script runs sessions and
    tasks just as the service does. A test hands a session to a task on purpose to
    exercise it, and a migration runs no tasks. `rule-roles` widens it (docs/roles.md).
    """

    code = "SL401"
    name = "session-escapes-to-task"
    message = (
        "session `{session}` handed to `{spawner}`: the task runs after the session is closed "
        "or concurrently with its owner (`concurrent operations are not permitted`); open one "
        "in the task with `async with {factory}() as session:`"
    )
    roles = APP_AND_SCRIPT  # see ## Where it runs
    tokens = ("add_task", "create_task", "ensure_future", "run_in_executor", "start_soon")

    requires = (SESSION,)  # and a session

    def visit_Call(self, node: cst.Call) -> None:
        spawned = spawned_arguments(self.ctx, node)
        if spawned is None:
            return
        spawner, args = spawned
        try:
            factory = Import.from_target(self.ctx.config.background_session_factory).name
        except ValueError:
            factory = "get_background_session"
        for arg in args:
            for ref in session_references(self.ctx, arg):
                session = self.ctx.module.code_for_node(ref)
                self.report(
                    ref, self.message.format(session=session, spawner=spawner, factory=factory)
                )
