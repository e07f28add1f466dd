"""TaskSet and stop_tasks: the one way background tasks are started, watched and stopped."""

from __future__ import annotations

import asyncio

from asqsd.tasks import StopDeadline, TaskSet, stop_tasks


async def test_tasks_that_end_in_time_are_not_cancelled() -> None:
    release = asyncio.Event()

    async def ends_when_released() -> None:
        await release.wait()

    task = asyncio.create_task(ends_when_released())
    asyncio.get_running_loop().call_soon(release.set)
    assert await stop_tasks([task], timeout_s=5) == set()
    assert task.done() and not task.cancelled()


async def test_tasks_still_running_after_the_timeout_are_cancelled() -> None:
    never = asyncio.Event()
    task = asyncio.create_task(never.wait())
    assert await stop_tasks([task], timeout_s=0.01) == set()
    assert task.cancelled()


async def test_a_zero_timeout_cancels_at_once() -> None:
    never = asyncio.Event()
    tasks = [asyncio.create_task(never.wait()) for _ in range(3)]
    await asyncio.sleep(0)  # let them start, so the cancellation reaches a running coroutine
    assert await stop_tasks(tasks, timeout_s=0) == set()
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_ignores_cancellation_is_reported_not_awaited_forever() -> None:
    stubborn_started = asyncio.Event()
    finish = asyncio.Event()

    async def stubborn() -> None:
        stubborn_started.set()
        while not finish.is_set():
            try:
                await finish.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop

    task = asyncio.create_task(stubborn())
    await stubborn_started.wait()
    still = await stop_tasks([task], timeout_s=0, cancel_wait_s=0.05)
    assert still == {task}
    finish.set()
    await task


async def test_a_crash_is_reported_to_the_owner_and_a_cancellation_is_not() -> None:
    crashes: list[BaseException] = []
    tasks = TaskSet(crashes.append)

    async def crash() -> None:
        raise RuntimeError("bug")

    never = asyncio.Event()
    crashed = tasks.spawn(crash())
    waiting = tasks.spawn(never.wait())
    await asyncio.wait([crashed])
    assert [str(exc) for exc in crashes] == ["bug"]
    assert len(tasks) == 1
    assert await tasks.stop(timeout_s=0) == set()
    assert waiting.cancelled()
    assert [str(exc) for exc in crashes] == ["bug"]
    assert len(tasks) == 0


async def test_stop_deadline_cuts_a_long_wait_once_forced() -> None:
    """A 60 s wait ends within the forced budget once the force event is set mid-wait."""
    force = asyncio.Event()
    deadline = StopDeadline(force, forced_s=0.05)
    never = asyncio.create_task(asyncio.Event().wait())
    loop = asyncio.get_running_loop()
    loop.call_soon(force.set)
    pending = await deadline.wait([never], deadline.end_after(60))
    assert pending == {never}
    assert deadline.left(None) == 0
    # The budget is spent: the task is cancelled but not waited for.
    assert await deadline.stop([never], 0, 5) == {never}
    assert never.cancelling() == 1


async def test_stop_deadline_until_forced_returns_at_the_signal() -> None:
    """``until_forced``: the wait gives up as soon as force is set, without spending the budget."""
    force = asyncio.Event()
    deadline = StopDeadline(force, forced_s=60)
    never = asyncio.create_task(asyncio.Event().wait())
    asyncio.get_running_loop().call_soon(force.set)
    assert await deadline.wait([never], None, until_forced=True) == {never}
    left = deadline.left(None)
    assert left is not None and left > 59
    never.cancel()
