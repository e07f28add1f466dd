"""What health reporting reads from the daemon, and the receive counts it judges SQS by.

Shared by the health server (:mod:`asqsd.observe.health`, on aiohttp.web) and the CloudWatch
Health metric (:mod:`asqsd.observe.cloudwatch`), which must not import aiohttp.web and
prometheus_client for it: on Elastic Beanstalk the metric is on in every environment, the health
server rarely.
"""

from __future__ import annotations

from typing import Protocol

from asqsd.observe.counters import Counters

RECEIVE_OPERATION = "ReceiveMessage"


class HealthSource(Protocol):
    """What health reporting (readiness, the CloudWatch Health metric) reads from the daemon."""

    @property
    def counters(self) -> Counters:
        """The daemon's live counters (successful receives are read from ``sqs_calls``)."""
        ...

    async def check_sqs(self) -> bool:
        """A cheap SQS call on the daemon's queue (e.g. GetQueueAttributes QueueArn); True if it worked."""
        ...

    async def check_worker(self) -> bool:
        """True if the worker accepts a TCP connection (or passes the configured health check)."""
        ...


def successful_receives(counters: Counters) -> int:
    """ReceiveMessage calls that returned (with or without messages), as the receivers count them."""
    return counters.sqs_calls.get(RECEIVE_OPERATION, 0) - counters.sqs_errors.get(RECEIVE_OPERATION, 0)


def completed_receives(counters: Counters) -> int:
    """ReceiveMessage calls that finished, successfully or not (outstanding polls excluded)."""
    return counters.sqs_calls.get(RECEIVE_OPERATION, 0)
