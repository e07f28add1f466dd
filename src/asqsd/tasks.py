"""Named task holders, and the one way asqsd stops background tasks: wait, cancel, wait again.

Every long-running part (receivers, dispatchers, batchers, heartbeat, periodic tasks, observers)
runs in a task its owner holds by name, never by position in a list. A task that ends with an
exception is a bug: it is reported to the owner's ``on_crash`` so the daemon can stop cleanly,
instead of cancelling its siblings mid-delivery as an ``asyncio.TaskGroup`` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine, Iterator
from typing import Any

OnCrash = Callable[[BaseException], None]


async def stop_tasks(
    tasks: Collection[asyncio.Task[Any]], timeout_s: float | None, cancel_wait_s: float | None = 1.0
) -> set[asyncio.Task[Any]]:
    """Wait up to ``timeout_s`` for ``tasks`` to end by themselves, then cancel the rest and wait
    up to ``cancel_wait_s`` (None: without bound) for them; returns the tasks still running."""
    pending = {task for task in tasks if not task.done()}
    if pending and (timeout_s is None or timeout_s > 0):
        _done, pending = await asyncio.wait(pending, timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        _done, pending = await asyncio.wait(pending, timeout=cancel_wait_s)
    return pending


class TaskSet:
    """Tasks started for one owner; a crash (an exception other than cancellation) calls ``on_crash``."""

    def __init__(self, on_crash: OnCrash | None = None) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_crash = on_crash

    def __len__(self) -> int:
        """How many of the tasks are still running."""
        return sum(1 for task in self._tasks if not task.done())

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._tasks))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start ``coro`` as a task of this set."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def stop(
        self, timeout_s: float | None, cancel_wait_s: float | None = 1.0
    ) -> set[asyncio.Task[Any]]:
        """:func:`stop_tasks` on every task of the set."""
        return await stop_tasks(self._tasks, timeout_s, cancel_wait_s)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None or self._on_crash is None:
            return
        exc = task.exception()
        assert exc is not None
        self._on_crash(exc)
