"""The log lines a delivery leaves: ``settled`` (debug, or info with ``log_settled`` as in
``asqsd local``) and, on the last receive before the redrive threshold, a failure line that says
SQS will dead-letter the message instead of promising a retry."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from structlog.testing import LogCapture

from asqsd.cli.local import local_settings
from tests.component.conftest import SettingsFactory
from tests.component.pipeline.test_outcomes import send, status_handler
from tests.support.polling import wait_until
from tests.support.worker import RecordingWorker


def events(capture: LogCapture, name: str) -> list[dict[str, Any]]:
    return [e for e in capture.entries if e["event"] == name]


@pytest.mark.parametrize("log_settled", [False, True])
async def test_settled_line_at_info_only_when_asked(
    sqs: Any,
    queue_url: str,
    make_settings: SettingsFactory,
    run_daemon: Any,
    info_logs: LogCapture,
    log_settled: bool,
) -> None:
    """At info: a settled line with outcome and elapsed time with log_settled (local mode), none
    without it (run mode, where it is a debug line)."""
    msgid = await send(sqs, queue_url)
    async with run_daemon(make_settings(log_settled=log_settled)) as daemon:
        await wait_until(lambda: daemon.counters.deleted == 1, what="delivered and deleted")
    settled = events(info_logs, "settled")
    if not log_settled:
        assert settled == []
        return
    assert len(settled) == 1
    assert settled[0]["log_level"] == "info"
    assert settled[0]["message_id"] == msgid
    assert settled[0]["outcome"] == "delete" and settled[0]["status"] == 200
    assert settled[0]["elapsed_s"] >= 0


def test_local_mode_turns_the_settled_line_on() -> None:
    """asqsd local logs settled lines at info unless the user said otherwise; run does not."""
    url = "http://127.0.0.1:9324/000000000000/default"
    assert local_settings({}, url, "http://127.0.0.1:9324", None).log_settled is True
    assert local_settings({"log_settled": False}, url, "http://127.0.0.1:9324", None).log_settled is False


async def test_last_failure_before_the_redrive_threshold_says_dead_letter(
    sqs: Any,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    info_logs: LogCapture,
) -> None:
    """maxReceiveCount 2: the first failure says retry_in_s, the second (last) says SQS will
    dead-letter the message and promises no retry."""
    dlq = (await sqs.create_queue(QueueName=f"dl-target-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"})
    url = (
        await sqs.create_queue(
            QueueName=f"dl-source-{uuid.uuid4().hex[:8]}", Attributes={"RedrivePolicy": redrive}
        )
    )["QueueUrl"]
    worker.handler = status_handler(500)
    await send(sqs, url)
    settings = make_settings(queue_url=url, error_visibility_timeout=0, wait_time_s=1)
    async with run_daemon(settings) as daemon:
        await wait_until(lambda: daemon.counters.failed >= 2, timeout_s=20, what="two failed attempts")
    failures = sorted(events(info_logs, "http-err"), key=lambda e: e["receive_count"])[:2]
    assert failures[0]["receive_count"] == 1 and failures[0]["retry_in_s"] == 0
    assert failures[1]["receive_count"] == 2
    assert failures[1]["detail"] == "will be dead-lettered by SQS"
    assert "retry_in_s" not in failures[1]
