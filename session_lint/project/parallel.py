"""Forked worker processes for the project index's work: one map over files, and
one task run beside the rest.

The index reads every file of the project before any file is linted; on one core
that was a third of a cold run on a large tree (docs/architecture.md, "Large
trees"). The per-file reads are independent: workers forked from this process
inherit the function and what it closes over (nothing is pickled but the items
and the results), and the results come back in the items' order, so the index is
the same whatever the number of workers (tests/lint/test_parallel_index.py).

Only the command line asks for workers (``--jobs``): a resident process (the
language server, flake8) may run threads, and forking one is unsafe.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many items a pool costs more to start than it saves (a fork with
# libcst imported, and a result pickled per item).
MIN_ITEMS = 64

_function: Callable[[object], object] | None = None


def _call(item: object) -> object:
    assert _function is not None  # set before the fork (``map_forked``)
    return _function(item)


def map_forked(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    jobs: int,
    meanwhile: Callable[[], None] | None = None,
) -> list[Result]:
    """``[function(item) for item in items]``, spread over ``jobs`` forked
    processes when there are enough items and the platform forks; ``meanwhile``
    runs in this process while the workers work (before the map when there are
    none). A worker that dies (or a platform that cannot start one) means the work
    is done here: the same results, later."""
    global _function
    if jobs < 2 or len(items) < MIN_ITEMS or not sys.platform.startswith("linux"):
        if meanwhile is not None:
            meanwhile()
        return [function(item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _function = function  # type: ignore[assignment]  # read by ``_call`` in the workers
    try:
        with ProcessPoolExecutor(jobs, multiprocessing.get_context("fork")) as pool:
            # Chunks: a few per worker, so that a slow file does not idle the others.
            chunksize = max(1, len(items) // (jobs * 8))
            pending = pool.map(_call, items, chunksize=chunksize)
            if meanwhile is not None:
                meanwhile()
                meanwhile = None
            return list(pending)  # type: ignore[arg-type]
    except (BrokenProcessPool, OSError):
        if meanwhile is not None:
            meanwhile()
        return [function(item) for item in items]
    finally:
        _function = None


def in_background(function: Callable[[], Result], jobs: int) -> Callable[[], Result]:
    """Start ``function()`` in a forked process when ``jobs`` allows one more, and
    return what waits for its result. Without a process (one job, a platform that
    does not fork, a process that fails or dies) the result is computed here, when
    asked for: the same result, later."""
    if jobs < 2 or not sys.platform.startswith("linux"):
        return function
    import multiprocessing

    context = multiprocessing.get_context("fork")
    try:
        receiver, sender = context.Pipe(duplex=False)
    except OSError:
        return function
    # A forked process takes the function as it is (nothing is pickled but the
    # result), and multiprocessing flushes this process's output before forking.
    process = context.Process(target=_send, args=(function, sender, receiver), daemon=True)
    try:
        process.start()
    except OSError:
        receiver.close()
        return function
    finally:
        sender.close()  # the child's copy is the one that writes

    def result() -> Result:
        try:
            done, value = receiver.recv()
        except (EOFError, OSError):
            done, value = False, None
        finally:
            receiver.close()
            process.join()
        return value if done else function()  # type: ignore[no-any-return]

    return result


def _send(function: Callable[[], object], sender: Connection, receiver: Connection) -> None:
    # Only the parent reads: with the child's copy of the reading end closed, a
    # parent that is gone makes the send fail instead of block on a full pipe.
    receiver.close()
    try:
        value: tuple[bool, object] = (True, function())
    except BaseException:  # computed again in the parent, which reports what it must
        value = (False, None)
    # A parent that stopped early (an error, Ctrl-C) reads nothing: end in silence,
    # not with a traceback on the terminal after the command has ended.
    with contextlib.suppress(OSError):
        sender.send(value)
    sender.close()
