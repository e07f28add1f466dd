"""``asqsd cron list`` and ``asqsd cron trigger <name>``: the periodic tasks, by hand.

Both read the ``cron.yaml`` that ``asqsd run`` would use (``cron_file``, else the application
directory). ``list`` prints each task's name, URL, schedule and next run (UTC). ``trigger``
enqueues one run of a task now on the configured queue, through the same function the scheduler
uses, so the worker receives the same body and ``X-Aws-Sqsd-Taskname`` / ``-Scheduled-At`` /
``-Path`` headers (scheduled at the current second). It needs no registry table, claims no
occurrence and does not change the schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from asqsd._compat import run as run_loop
from asqsd.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, config_error
from asqsd.cli.serve import check_sqs_target
from asqsd.clients.sqs.credentials import explain
from asqsd.clients.sqs.factory import open_sqs
from asqsd.config import LoadedSettings, Settings
from asqsd.errors import ConfigError, SQSError
from asqsd.logs import configure_logging
from asqsd.periodic.cron_yaml import CronTask
from asqsd.periodic.runner import find_tasks
from asqsd.periodic.scheduler import enqueue_occurrence

# Bound on the one SendMessage of a trigger (connect, sign, send), so the command never hangs.
_SEND_TIMEOUT_S = 30.0


def cron_command(args: argparse.Namespace, loaded: LoadedSettings) -> int:
    """Dispatch ``asqsd cron list | trigger``."""
    try:
        path, tasks = find_tasks(loaded.settings, loaded.warnings)
    except ConfigError as exc:
        return config_error(exc.problems)
    for warning in loaded.warnings:
        print(f"asqsd: warning: {warning}", file=sys.stderr)
    if args.cron_command == "list":
        return list_tasks(path, tasks, datetime.now(UTC))
    return trigger_task(args.name, path, tasks, loaded)


def list_tasks(path: Path | None, tasks: Sequence[CronTask], now: datetime) -> int:
    """Print one line per task: name, URL, schedule as written, next run after ``now`` (UTC)."""
    if path is None:
        print("asqsd: no cron.yaml found (set cron_file to name one)", file=sys.stderr)
        return EXIT_OK
    rows = [("NAME", "URL", "SCHEDULE", "NEXT RUN (UTC)")]
    for task in tasks:
        next_run = task.schedule.next_after(now).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append((task.name, task.url, task.expression, next_run))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, url, schedule, next_run in rows:
        print(f"{name:<{widths[0]}}  {url:<{widths[1]}}  {schedule:<{widths[2]}}  {next_run}")
    print(f"asqsd: {len(tasks)} task(s) in {path}", file=sys.stderr)
    return EXIT_OK


def trigger_task(name: str, path: Path | None, tasks: Sequence[CronTask], loaded: LoadedSettings) -> int:
    """Enqueue one run of the task called ``name`` on the configured queue; exit 2 if unknown."""
    task = next((t for t in tasks if t.name == name), None)
    if task is None:
        known = ", ".join(repr(t.name) for t in tasks) or "none"
        where = str(path) if path is not None else "no cron.yaml found"
        print(f"asqsd: unknown task {name!r} ({where}); known tasks: {known}", file=sys.stderr)
        return EXIT_CONFIG
    settings = loaded.settings
    if settings.queue_url is None:
        return config_error(["queue_url is required: the queue the task is enqueued on"])
    try:
        check_sqs_target(loaded)
    except ConfigError as exc:
        return config_error(exc.problems)
    # Only problems are logged: the command's answer is the line it prints.
    configure_logging("debug" if settings.log_level == "debug" else "warning", settings.log_format)
    scheduled_at = int(time.time())
    try:
        message_id = run_loop(_enqueue(settings, task, scheduled_at), settings.loop)
    except (SQSError, OSError, TimeoutError) as exc:
        problem = explain(exc)
        hint = f" ({problem.hint})" if problem is not None else ""
        print(f"asqsd: cannot enqueue {task.name!r}: {exc or 'timed out'}{hint}", file=sys.stderr)
        return EXIT_FAILURE
    stamp = datetime.fromtimestamp(scheduled_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"enqueued {task.name} ({task.url}) scheduled at {stamp} as message {message_id}")
    return EXIT_OK


async def _enqueue(settings: Settings, task: CronTask, scheduled_at: int) -> str:
    from aiobotocore.session import get_session

    async with contextlib.AsyncExitStack() as stack:
        sqs, _region = await open_sqs(get_session(), settings, stack)
        async with asyncio.timeout(_SEND_TIMEOUT_S):
            return await enqueue_occurrence(sqs, task, scheduled_at)
