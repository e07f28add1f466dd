"""Queues from flags or a file: dead-letter queues first, redrive policies, errors that name the queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from asqsd.emulator import Emulator
from asqsd.emulator.queue_spec import (
    QueueSpec,
    QueueSpecError,
    create_queues,
    load_queue_file,
    specs_from_flags,
)

QUEUES_YAML = """\
queues:
  jobs:
    attributes: {VisibilityTimeout: 30, ReceiveMessageWaitTimeSeconds: 1}
    dead_letter_queue: jobs-dlq
    max_receive_count: 5
  orders.fifo:
    attributes: {ContentBasedDeduplication: true}
    dead_letter_queue: orders-dlq.fifo
  jobs-dlq:
    attributes: {MessageRetentionPeriod: 1209600}
"""


def redrive(emulator: Emulator, name: str) -> dict[str, object]:
    policy = emulator.store.get_queue(name).config.redrive
    assert policy is not None, name
    return {"deadLetterTargetArn": policy.target_arn, "maxReceiveCount": policy.max_receive_count}


def test_a_file_creates_queues_dead_letter_queues_first(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES_YAML)
    emulator = Emulator(port=9)
    urls = create_queues(emulator, load_queue_file(path))
    assert list(urls) == ["jobs-dlq", "jobs", "orders-dlq.fifo", "orders.fifo"]
    assert urls["jobs"] == "http://127.0.0.1:9/000000000000/jobs"
    attributes = emulator.store.get_queue("jobs").config
    assert attributes.visibility_timeout == 30
    assert redrive(emulator, "jobs") == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:jobs-dlq",
        "maxReceiveCount": 5,
    }
    assert emulator.store.get_queue("orders-dlq.fifo").config.fifo  # created although not listed


def test_flags_give_every_queue_the_dead_letter_queue() -> None:
    emulator = Emulator(port=9)
    urls = create_queues(emulator, specs_from_flags(["a", "b"], "dead", 2))
    assert list(urls) == ["dead", "a", "b"]
    assert redrive(emulator, "b")["maxReceiveCount"] == 2
    with pytest.raises(QueueSpecError, match="name the queues it serves with --queue"):
        specs_from_flags([], "dead", 3)
    with pytest.raises(QueueSpecError, match="SQS allows 1 to 1000"):
        specs_from_flags(["a"], "dead", 0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("queues: [a, b]", "expected a 'queues' mapping"),
        ("queues:\n  a: {colour: red}", "queue 'a': unknown key 'colour'"),
        ("queues:\n  a: {max_receive_count: many}", "queue 'a': 'max_receive_count' must be a whole number"),
        ("queues: {a: [", "not YAML or JSON"),
    ],
)
def test_bad_files_name_the_queue_and_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(text)
    with pytest.raises(QueueSpecError, match=problem):
        load_queue_file(path)


def test_refusals_name_the_queue() -> None:
    emulator = Emulator(port=9)
    with pytest.raises(QueueSpecError, match=r"queue 'a': InvalidParameterValue: .*same type"):
        create_queues(emulator, [QueueSpec("a", {}, "a-dlq.fifo")])
    with pytest.raises(QueueSpecError, match="cycle: a -> b -> a"):
        create_queues(Emulator(port=9), [QueueSpec("a", {}, "b"), QueueSpec("b", {}, "a")])
