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


class StopDeadline:
    """The bounds of one shutdown's waits: each wait has its own timeout until ``force`` is set
    (a second signal); from then on every wait together ends within ``forced_s``.

    A forced stop must end in a bounded time whatever step it interrupts, so each step asks this
    object how long it may still wait instead of holding a timeout of its own.
    """

    def __init__(self, force: asyncio.Event, forced_s: float) -> None:
        self._force = force
        self._forced_s = forced_s
        self._forced_end: float | None = None

    @property
    def forced(self) -> bool:
        """True once ``force`` is set."""
        return self._force.is_set()

    def left(self, end: float | None) -> float | None:
        """Seconds until ``end`` (a loop time, None: none), cut to the forced budget once forced."""
        now = asyncio.get_running_loop().time()
        if self._force.is_set():
            if self._forced_end is None:
                self._forced_end = now + self._forced_s
            end = self._forced_end if end is None else min(end, self._forced_end)
        return None if end is None else max(end - now, 0.0)

    def end_after(self, timeout_s: float | None) -> float | None:
        """The loop time ``timeout_s`` from now (None: no end)."""
        return None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s

    async def wait(
        self, tasks: Collection[asyncio.Task[Any]], end: float | None, *, until_forced: bool = False
    ) -> set[asyncio.Task[Any]]:
        """Wait for ``tasks`` until ``end`` (or the forced budget; ``until_forced``: only until
        ``force`` is set); returns the tasks still running."""
        pending = {task for task in tasks if not task.done()}
        forced = asyncio.ensure_future(self._force.wait())
        try:
            while pending and not (until_forced and forced.done()):
                left = self.left(end)
                if left == 0:
                    break
                watch = pending if forced.done() else pending | {forced}
                done, _ = await asyncio.wait(watch, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
        finally:
            forced.cancel()
        return pending

    async def stop(
        self,
        tasks: Collection[asyncio.Task[Any]],
        timeout_s: float | None,
        cancel_wait_s: float | None,
        *,
        until_forced: bool = False,
    ) -> set[asyncio.Task[Any]]:
        """:func:`stop_tasks` within these bounds: wait, cancel the rest, wait for them."""
        pending = await self.wait(tasks, self.end_after(timeout_s), until_forced=until_forced)
        for task in pending:
            task.cancel()
        return await self.wait(pending, self.end_after(cancel_wait_s))
