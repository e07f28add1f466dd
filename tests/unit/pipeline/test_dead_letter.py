"""Dead-letter decisions without SQS: the target queue, the attributes, the reason, the settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from asqsd.clients.worker.base import DeliveryResult
from asqsd.config import load_settings
from asqsd.errors import ConfigError, StartupError
from asqsd.message import Message, MessageAttribute
from asqsd.observe.counters import Counters
from asqsd.pipeline.dead_letter import (
    DeadLetterer,
    dead_letter_attributes,
    dead_letter_queue,
    queue_url_from_arn,
    redrive_target_arn,
)
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.queue_check import QueueCheck
from asqsd.pipeline.settle import Settler

SOURCE = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"


def message(receive_count: int = 1, attributes: int = 0) -> Message:
    return Message(
        "m-1",
        "rh",
        "body",
        attributes={"ApproximateReceiveCount": str(receive_count)},
        message_attributes={f"a{i}": MessageAttribute("String", str(i)) for i in range(attributes)},
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SOURCE, "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs-dlq"),
        ("http://127.0.0.1:5000/123456789012/jobs", "http://127.0.0.1:5000/123456789012/jobs-dlq"),
    ],
)
def test_the_redrive_target_is_reached_on_the_source_queue_host(source: str, expected: str) -> None:
    assert queue_url_from_arn("arn:aws:sqs:eu-west-1:123456789012:jobs-dlq", source) == expected


@pytest.mark.parametrize("arn", ["", "jobs-dlq", "arn:aws:sns:eu-west-1:1:t", "arn:aws:sqs:eu-west-1:1:"])
def test_a_malformed_arn_gives_no_url(arn: str) -> None:
    assert queue_url_from_arn(arn, SOURCE) is None


@pytest.mark.parametrize("policy", [None, "", "not json", "[]", '{"maxReceiveCount": 3}'])
def test_a_redrive_policy_without_a_target_gives_none(policy: str | None) -> None:
    assert redrive_target_arn(policy) is None


def check(attributes: dict[str, str] | None = None, denied: bool = False) -> QueueCheck:
    queue = QueueCheck(SOURCE, asyncio.Event())
    queue.attributes = attributes or {}
    queue.denied = denied
    return queue


def test_the_dead_letter_queue_comes_from_the_setting_then_the_redrive_policy() -> None:
    redrive = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:d"})}
    on = load_settings({"max_retries": 3}, env={}).settings
    assert dead_letter_queue(on, check(redrive)) == "https://sqs.eu-west-1.amazonaws.com/123456789012/d"
    explicit = load_settings({"max_retries": 3, "dead_letter_queue_url": SOURCE + "-x"}, env={}).settings
    assert dead_letter_queue(explicit, check(redrive)) == SOURCE + "-x"
    assert dead_letter_queue(load_settings({}, env={}).settings, check()) is None  # off: never refused


@pytest.mark.parametrize(
    ("denied", "why"), [(False, "no redrive policy"), (True, "sqs:GetQueueAttributes is denied")]
)
def test_without_a_known_dead_letter_queue_start_up_is_refused(denied: bool, why: str) -> None:
    settings = load_settings({"dead_letter_statuses": "422"}, env={}).settings
    with pytest.raises(StartupError, match=f"dead_letter_statuses need.*{why}.*set dead_letter_queue_url"):
        dead_letter_queue(settings, check(denied=denied))


def test_asqsd_attributes_fill_the_slots_sqs_leaves() -> None:
    """Ten attributes at most: the message's own are kept; asqsd's follow in order of importance."""
    attributes, omitted = dead_letter_attributes(
        message(receive_count=4, attributes=7),
        reason="status",
        status=422,
        source_queue_url=SOURCE,
        now_s=0.0,
    )
    assert len(attributes) == 10
    assert attributes["asqsd.dead_letter.reason"] == MessageAttribute("String", "status")
    assert attributes["asqsd.dead_letter.status"] == MessageAttribute("Number", "422")
    assert attributes["asqsd.dead_letter.source_queue"] == MessageAttribute("String", SOURCE)
    assert omitted == ["asqsd.dead_letter.receive_count", "asqsd.dead_letter.time"]


def test_all_asqsd_attributes_when_there_is_room() -> None:
    attributes, omitted = dead_letter_attributes(
        message(receive_count=4), reason="max_retries", status=None, source_queue_url=SOURCE, now_s=1.5
    )
    assert omitted == []
    assert attributes == {
        "asqsd.dead_letter.reason": MessageAttribute("String", "max_retries"),
        "asqsd.dead_letter.source_queue": MessageAttribute("String", SOURCE),
        "asqsd.dead_letter.receive_count": MessageAttribute("Number", "4"),
        "asqsd.dead_letter.time": MessageAttribute("String", "1970-01-01T00:00:01.500Z"),
    }


def test_attributes_of_an_earlier_dead_lettering_are_replaced() -> None:
    earlier = message()
    earlier.message_attributes["asqsd.dead_letter.reason"] = MessageAttribute("String", "old")
    attributes, _ = dead_letter_attributes(
        earlier, reason="status", status=400, source_queue_url=SOURCE, now_s=0
    )
    assert attributes["asqsd.dead_letter.reason"].string_value == "status"


def test_the_reason_is_the_status_first_then_the_receive_count() -> None:
    settings = load_settings({"dead_letter_statuses": "400,422", "max_retries": 3}, env={}).settings
    counters = Counters()
    dead_letterer = DeadLetterer(
        None,  # type: ignore[arg-type]  # reason() makes no call
        SOURCE + "-dlq",
        settings,
        Settler(None, LeaseTable(), counters, 0.01),  # type: ignore[arg-type]
        counters,
    )
    assert dead_letterer.reason(message(1), DeliveryResult(422, None, 0.1)) == "status"
    assert dead_letterer.reason(message(3), DeliveryResult(422, None, 0.1)) == "status"
    assert dead_letterer.reason(message(2), DeliveryResult(500, None, 0.1)) is None
    assert dead_letterer.reason(message(3), DeliveryResult(None, "refused", 0.1)) == "max_retries"


def test_max_retries_is_the_stock_key_and_option(tmp_path: Path) -> None:
    """The stock file key max_retries and the EB option MaxRetries set it (no longer ignored)."""
    config = tmp_path / "default.yaml"
    config.write_text("max_retries: 5\n")
    loaded = load_settings({}, {}, config)
    assert loaded.settings.max_retries == 5
    assert loaded.warnings == []
    assert load_settings({}, {"MaxRetries": "7"}).settings.max_retries == 7


def test_a_status_cannot_be_both_success_and_dead_letter() -> None:
    with pytest.raises(ConfigError, match="share 200"):
        load_settings({"dead_letter_statuses": "200,400"}, env={})


def test_the_dead_letter_queue_cannot_be_the_source_queue() -> None:
    with pytest.raises(ConfigError, match="another queue"):
        load_settings({"queue_url": SOURCE, "dead_letter_queue_url": SOURCE}, env={})
