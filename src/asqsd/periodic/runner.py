"""Periodic tasks (cron.yaml): find and load the file, then run leader election + scheduler.

Without a cron.yaml nothing here touches DynamoDB: :func:`load_tasks` returns no tasks and the
daemon builds no :class:`PeriodicTasks`, and the election, the scheduler and the DynamoDB client
are not even imported (:meth:`PeriodicTasks.open` imports them).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asqsd.clients.sqs.base import SQSClient
from asqsd.config import Settings
from asqsd.errors import ConfigError
from asqsd.logs import get_logger
from asqsd.observe.leader_status import LeaderStatus
from asqsd.periodic.clock import Clock
from asqsd.periodic.cron_yaml import DEFAULT_SEARCH_DIRS, CronTask, find_cron_file, load_cron_file
from asqsd.tasks import OnCrash, TaskSet

if TYPE_CHECKING:
    from asqsd.periodic.leader import LeaderElection
    from asqsd.periodic.scheduler import PeriodicScheduler

log = get_logger("periodic")
_GET_CONFIG = "/opt/elasticbeanstalk/bin/get-config"
_STOP_WAIT_S = 15.0


def app_deploy_dir() -> Path | None:
    """Elastic Beanstalk's application directory, asked of the platform as the stock daemon does."""
    if shutil.which(_GET_CONFIG) is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv of the platform tool, no shell
            [_GET_CONFIG, "container", "-k", "app_deploy_dir"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = result.stdout.strip()
    return Path(value) if result.returncode == 0 and value else None


def load_tasks(settings: Settings, warnings: list[str]) -> tuple[Path | None, list[CronTask]]:
    """The cron.yaml in use and its tasks. Raises ConfigError (a CronError) for an invalid file,
    or for tasks without a registry table to elect their leader in."""
    path, tasks = find_tasks(settings, warnings)
    if tasks and not settings.registry_table:
        raise ConfigError([f"{path}: {len(tasks)} periodic task(s) need registry_table (the DynamoDB table)"])
    return path, tasks


def find_tasks(settings: Settings, warnings: list[str]) -> tuple[Path | None, list[CronTask]]:
    """The cron.yaml ``asqsd run`` would use (``cron_file``, else the application directory) and
    its tasks; (None, []) when there is none. Raises ConfigError (a CronError) for an invalid file."""
    explicit = Path(settings.cron_file) if settings.cron_file else None
    search = list(DEFAULT_SEARCH_DIRS)
    deploy_dir = None if explicit else app_deploy_dir()
    if deploy_dir is not None:
        search.insert(0, deploy_dir)
    path = find_cron_file(explicit, search)
    if path is None:
        return None, []
    return path, load_cron_file(path, warnings)


class PeriodicTasks:
    """Owns the DynamoDB client, the election and the scheduler of one daemon."""

    def __init__(
        self,
        settings: Settings,
        tasks: list[CronTask],
        *,
        create_table: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._tasks = tasks
        self._create_table = create_table
        self._clock = clock  # tests run cron minutes faster than real time
        self.election: LeaderElection | None = None
        self.scheduler: PeriodicScheduler | None = None
        self._running = TaskSet(self._crashed)
        self._on_crash: OnCrash | None = None
        self._scheduler_task: asyncio.Task[None] | None = None

    async def open(
        self, session: Any, region: str | None, stack: contextlib.AsyncExitStack, sqs: SQSClient
    ) -> None:
        """Create the DynamoDB client (closed with the stack) and the two components."""
        assert self._settings.registry_table is not None
        from asqsd.clients.dynamodb import open_dynamodb
        from asqsd.periodic.leader import LeaderElection
        from asqsd.periodic.registry import RegistryTable
        from asqsd.periodic.scheduler import PeriodicScheduler

        dynamodb = await open_dynamodb(session, region, stack)
        registry = RegistryTable(dynamodb, self._settings.registry_table)
        self.election = LeaderElection(
            registry, create_table_if_missing=self._create_table, clock=self._clock
        )
        self.scheduler = PeriodicScheduler(self._tasks, sqs, self.election, registry, self._clock)
        log.info("periodic-tasks", tasks=[t.name for t in self._tasks], table=self._settings.registry_table)

    def leader_status(self) -> LeaderStatus | None:
        """Who leads and since when, for metrics; None before :meth:`open`."""
        election = self.election
        if election is None:
            return None
        return LeaderStatus(
            election.identity, election.is_leader, election.leading_since, election.seen_leader
        )

    def start(self, on_crash: OnCrash) -> None:
        """Start election and scheduler; a crash of either is reported to ``on_crash``."""
        assert self.election is not None and self.scheduler is not None
        self._running.spawn(self.election.run())
        self._scheduler_task = self._running.spawn(self.scheduler.run())
        self._on_crash = on_crash

    async def stop(self) -> None:
        """Scheduler first (it finishes the occurrence in hand), then release the lease."""
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._scheduler_task is not None:
            await asyncio.wait([self._scheduler_task], timeout=_STOP_WAIT_S)
        if self.election is not None:
            self.election.stop()
        await self._running.stop(_STOP_WAIT_S)

    def _crashed(self, exc: BaseException) -> None:
        if self._on_crash is not None:
            self._on_crash(exc)
