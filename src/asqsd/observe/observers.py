"""The optional observers of one daemon: health/metrics server, backlog poller, CloudWatch Health
metric, CloudWatch metrics (EMF lines, PutMetricData), stock log file. Each is off unless its
setting asks for it; none is on the hot path except the stock log's one line per failure (and per
POST when enabled).

Each observer's module is imported only when its setting turns it on: the health server brings
``aiohttp.web`` and ``prometheus_client``, which a daemon without it should not pay for at start-up
(docs/daemon.md, "Start-up time and memory").
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asqsd.config import Settings
from asqsd.errors import StartupError
from asqsd.observe.stocklog import StockLogWriter
from asqsd.tasks import TaskSet

if TYPE_CHECKING:
    from asqsd.observe.backlog import QueueBacklogPoller
    from asqsd.observe.cloudwatch import HealthMetricPublisher
    from asqsd.observe.control import ControlView
    from asqsd.observe.emf import EmfReporter
    from asqsd.observe.health import DaemonView, HealthServer
    from asqsd.observe.metricdata import MetricDataPublisher

_STOP_WAIT_S = 5.0


class Observers:
    """Owns the optional observers of one daemon and their lifecycles."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.stock_log = StockLogWriter(settings.stock_log_file) if settings.stock_log_file else None
        self.backlog: QueueBacklogPoller | None = None
        self.health: HealthServer | None = None
        self._publisher: HealthMetricPublisher | None = None
        self.emf: EmfReporter | None = None
        self._metric_data: MetricDataPublisher | None = None
        self._tasks = TaskSet()

    async def open(
        self, daemon: DaemonView, stack: contextlib.AsyncExitStack, control: ControlView | None = None
    ) -> None:
        """Start the health server first, so liveness answers during start-up; with ``control``
        it also serves /pause, /resume and /inflight."""
        settings = self._settings
        if not settings.health_server:
            return
        from asqsd.observe.health import HealthServer

        self.health = HealthServer(
            daemon,
            settings.health_host,
            settings.health_port,
            allow_remote=settings.health_allow_remote,
            check_ttl_s=settings.health_check_ttl_s,
            control=control,
        )
        try:
            await self.health.start()
        except OSError as exc:
            raise StartupError(f"health server {settings.health_host}:{settings.health_port}: {exc}") from exc
        stack.push_async_callback(self.health.stop)

    def wants_cloudwatch(self) -> bool:
        """Whether the Health metric or ``cloudwatch_metrics`` needs a CloudWatch client."""
        settings = self._settings
        return bool((settings.health_metric and settings.environment_name) or settings.cloudwatch_metrics)

    async def open_cloudwatch(
        self, session: Any, region: str | None, stack: contextlib.AsyncExitStack
    ) -> Any:
        """An aiobotocore CloudWatch client for the Health metric or ``cloudwatch_metrics``
        (``sqs_client: botocore``; the daemon asks only when :meth:`wants_cloudwatch`, and makes
        the lean one itself otherwise)."""
        from aiobotocore.config import AioConfig

        config = AioConfig(retries={"total_max_attempts": 2}, connect_timeout=5, read_timeout=10)
        # No endpoint_url: that setting is SQS's; botocore honours AWS_ENDPOINT_URL_CLOUDWATCH.
        return await stack.enter_async_context(
            session.create_client("cloudwatch", region_name=region, config=config)
        )

    def start(
        self,
        daemon: DaemonView,
        queue_attributes: Callable[[list[str]], Awaitable[dict[str, str]]] | None,
        cloudwatch: Any,
        queue: str,
    ) -> None:
        """Start the background observers (after the queue check succeeded); no backlog poller
        without ``queue_attributes`` (the policy refuses GetQueueAttributes). ``queue`` is the
        queue name, a dimension of the CloudWatch metrics."""
        settings = self._settings
        if queue_attributes is not None and settings.health_server and settings.backlog_poll_interval_s > 0:
            from asqsd.observe.backlog import QueueBacklogPoller

            self.backlog = QueueBacklogPoller(queue_attributes, settings.backlog_poll_interval_s)
            self._tasks.spawn(self.backlog.run())
        if cloudwatch is not None and settings.health_metric and settings.environment_name:
            from asqsd.observe.cloudwatch import HealthMetricPublisher

            self._publisher = HealthMetricPublisher(
                cloudwatch,
                settings.environment_name,
                daemon,
                settings.cloudwatch_interval_s,
                fault_file=settings.fault_file,
            )
            self._tasks.spawn(self._publisher.run())
        self._start_metrics(daemon, cloudwatch, queue)

    def _start_metrics(self, daemon: DaemonView, cloudwatch: Any, queue: str) -> None:
        """EMF lines and/or PutMetricData, each with its own interval reader."""
        settings = self._settings
        if not settings.emf_file and not (cloudwatch is not None and settings.cloudwatch_metrics):
            return
        from asqsd.observe.emf import EmfReporter, dimensions_of
        from asqsd.observe.interval import IntervalReader

        dimensions = dimensions_of(settings.environment_name, queue)
        if settings.emf_file:
            self.emf = EmfReporter(
                IntervalReader(daemon.counters, daemon.delivery, daemon.gauges),
                settings.emf_file,
                namespace=settings.emf_namespace,
                dimensions=dimensions,
                interval_s=settings.emf_interval_s,
            )
            self._tasks.spawn(self.emf.run())
        if cloudwatch is not None and settings.cloudwatch_metrics:
            from asqsd.observe.metricdata import MetricDataPublisher

            self._metric_data = MetricDataPublisher(
                cloudwatch,
                IntervalReader(daemon.counters, daemon.delivery, daemon.gauges),
                daemon.counters,
                namespace=settings.emf_namespace,
                dimensions=dimensions,
                interval_s=settings.emf_interval_s,
            )
            self._tasks.spawn(self._metric_data.run())

    async def stop(self) -> None:
        """Stop the observers (the health server closes with the exit stack)."""
        if self.backlog is not None:
            self.backlog.stop()
        for reporter in (self._publisher, self.emf, self._metric_data):
            if reporter is not None:
                reporter.stop()
        await self._tasks.stop(_STOP_WAIT_S)
        if self.stock_log is not None:
            self.stock_log.close()
        if self.emf is not None:
            self.emf.close()

    def gauges(self) -> dict[str, float]:
        """The backlog gauges, when polled."""
        return self.backlog.gauges() if self.backlog is not None else {}

    def reopen_logs(self) -> None:
        """SIGHUP: reopen the stock log and EMF files (logrotate)."""
        if self.stock_log is not None:
            self.stock_log.reopen()
        if self.emf is not None:
            self.emf.reopen()
