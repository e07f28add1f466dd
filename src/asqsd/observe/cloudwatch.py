"""The stock daemon's only metric: ``ElasticBeanstalk/SQSD`` ``Health``.

Every ``interval_s`` (stock: 60 s) publish 1 if the worker accepts a TCP connection (or passes
the configured health check) **and** a ReceiveMessage succeeded since the previous check, else 0,
with dimension ``EnvironmentName``. Elastic Beanstalk's health view reads this metric, so a
replacement daemon must keep writing it.

One deliberate refinement: when *no* receive completed at all since the previous check (every
dispatcher busy, so the receivers are waiting for capacity rather than polling), asqsd asks the
daemon's cheap SQS check instead of reporting "unhealthy" for a daemon that is merely saturated.
A receive that completed with an error still means unhealthy.

Optionally ``fault.json`` (``{"cause": ..., "timestamp": ...}``) is written while unhealthy and
removed when healthy, as sqsd 2.3 did for the enhanced-health agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asqsd.logs import get_logger
from asqsd.observe.health_source import HealthSource, completed_receives, successful_receives

log = get_logger("cloudwatch")

NAMESPACE = "ElasticBeanstalk/SQSD"
METRIC_NAME = "Health"
DIMENSION_NAME = "EnvironmentName"

CAUSE_WORKER = "worker not accepting connections"
CAUSE_SQS = "no successful SQS receive since the last check"


@dataclass(slots=True, frozen=True)
class HealthVerdict:
    """One health check: the published value and, when unhealthy, why."""

    healthy: bool
    cause: str | None = None

    @property
    def value(self) -> float:
        """The metric value: 1.0 healthy, 0.0 unhealthy."""
        return 1.0 if self.healthy else 0.0


def fault_document(cause: str, epoch_s: float) -> str:
    """The fault.json content: ``{"cause": ..., "timestamp": "<UTC ISO-8601 Z>"}``."""
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
    return json.dumps({"cause": cause, "timestamp": timestamp})


class HealthMetricPublisher:
    """Publishes the Health metric every ``interval_s`` until :meth:`stop`; never raises.

    ``cloudwatch_client`` is an aiobotocore ``cloudwatch`` client, created and closed by the
    caller. The first check happens one interval after :meth:`run` starts, so "since the previous
    check" always covers a full interval. CloudWatch and file errors are logged; the next interval
    simply tries again.
    """

    def __init__(
        self,
        cloudwatch_client: Any,
        environment_name: str,
        view: HealthSource,
        interval_s: float = 60.0,
        *,
        fault_file: Path | str | None = None,
        check_timeout_s: float = 5.0,
        put_timeout_s: float = 15.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not environment_name:
            raise ValueError("environment_name is required for the Health metric dimension")
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._client = cloudwatch_client
        self._environment_name = environment_name
        self._view = view
        self._interval_s = interval_s
        self._fault_file = Path(fault_file) if fault_file is not None else None
        self._check_timeout_s = check_timeout_s
        self._put_timeout_s = put_timeout_s
        self._wall_clock = wall_clock
        self._stopped = asyncio.Event()
        self._seen_success = successful_receives(view.counters)
        self._seen_completed = completed_receives(view.counters)
        self._put_failing = False
        self._file_failing = False
        self.last: HealthVerdict | None = None
        self.published = 0
        self.put_errors = 0

    def stop(self) -> None:
        """End :meth:`run` (at once if it is waiting for the next interval)."""
        self._stopped.set()

    async def run(self) -> None:
        """Check and publish every interval until stopped."""
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._stopped.wait()
            if self._stopped.is_set():
                return
            await self.publish_once()

    async def publish_once(self) -> HealthVerdict:
        """One check: update fault.json, then PutMetricData. Errors are logged, not raised."""
        verdict = await self.check()
        if verdict.healthy != (self.last.healthy if self.last else True):
            log.warning("health-changed", healthy=verdict.healthy, cause=verdict.cause)
        self.last = verdict
        self._update_fault_file(verdict)
        await self._put(verdict)
        return verdict

    async def check(self) -> HealthVerdict:
        """Evaluate health now; consumes the "since the previous check" window."""
        worker_ok = await self._guarded(self._view.check_worker)
        counters = self._view.counters
        success, completed = successful_receives(counters), completed_receives(counters)
        if success > self._seen_success:
            sqs_ok = True
        elif completed == self._seen_completed:
            sqs_ok = await self._guarded(self._view.check_sqs)  # no receive finished: saturated?
        else:
            sqs_ok = False  # receives finished, every one of them failed
        self._seen_success, self._seen_completed = success, completed
        causes = [cause for ok, cause in ((worker_ok, CAUSE_WORKER), (sqs_ok, CAUSE_SQS)) if not ok]
        return HealthVerdict(not causes, "; ".join(causes) or None)

    async def _guarded(self, check: Callable[[], Awaitable[bool]]) -> bool:
        try:
            async with asyncio.timeout(self._check_timeout_s):
                return bool(await check())
        except Exception as exc:  # noqa: BLE001 - a failing probe is an unhealthy verdict, not a crash
            log.debug("health-probe-failed", error=repr(exc))
            return False

    async def _put(self, verdict: HealthVerdict) -> None:
        datum = {
            "MetricName": METRIC_NAME,
            "Dimensions": [{"Name": DIMENSION_NAME, "Value": self._environment_name}],
            "Value": verdict.value,
        }
        try:
            async with asyncio.timeout(self._put_timeout_s):
                await self._client.put_metric_data(Namespace=NAMESPACE, MetricData=[datum])
        except Exception as exc:  # noqa: BLE001 - CloudWatch trouble must never stop the daemon
            self.put_errors += 1
            log.warning("health-metric-failed", error=repr(exc), retry_in_s=self._interval_s)
            self._put_failing = True
            return
        self.published += 1
        if self._put_failing:
            self._put_failing = False
            log.info("health-metric-recovered")

    def _update_fault_file(self, verdict: HealthVerdict) -> None:
        path = self._fault_file
        if path is None:
            return
        try:
            if verdict.healthy:
                path.unlink(missing_ok=True)
            else:
                _write_atomically(path, fault_document(verdict.cause or "unhealthy", self._wall_clock()))
        except OSError as exc:
            if not self._file_failing:  # once per streak: the same error every minute is noise
                log.warning("fault-file-failed", path=str(path), error=str(exc))
            self._file_failing = True
            return
        self._file_failing = False


def _write_atomically(path: Path, text: str) -> None:
    # Write-then-rename so the health agent never reads a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fault-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the health agent runs as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
