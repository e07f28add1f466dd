"""Queue attributes: defaults, validation of CreateQueue/SetQueueAttributes input, rendering."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from asqsd.emulator import errors

MAX_MESSAGE_SIZE = 1_048_576
MAX_VISIBILITY_TIMEOUT = 43_200
MAX_DELAY_SECONDS = 900
MAX_WAIT_SECONDS = 20

_INT_RANGES: dict[str, tuple[int, int]] = {
    "VisibilityTimeout": (0, MAX_VISIBILITY_TIMEOUT),
    "DelaySeconds": (0, MAX_DELAY_SECONDS),
    "MessageRetentionPeriod": (60, 1_209_600),
    "MaximumMessageSize": (1024, MAX_MESSAGE_SIZE),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT_SECONDS),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400),
}
# Stored verbatim: the emulator does not enforce policies or encryption.
_OPAQUE = frozenset({"Policy", "KmsMasterKeyId", "RedriveAllowPolicy"})
_BOOLEAN = frozenset({"SqsManagedSseEnabled"})
_FIFO_ONLY = frozenset({"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"})
_CHOICES = {
    "DeduplicationScope": frozenset({"messageGroup", "queue"}),
    "FifoThroughputLimit": frozenset({"perQueue", "perMessageGroupId"}),
}
COUNT_ATTRIBUTES = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    }
)
READ_ONLY = COUNT_ATTRIBUTES | {"QueueArn", "CreatedTimestamp", "LastModifiedTimestamp"}
SETTABLE = frozenset(_INT_RANGES) | _OPAQUE | _BOOLEAN | _FIFO_ONLY | {"RedrivePolicy"}
KNOWN = SETTABLE | READ_ONLY | {"FifoQueue"}

_STANDARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
_FIFO_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")


@dataclass(slots=True)
class RedrivePolicy:
    """Where messages go after too many receives."""

    target_arn: str
    max_receive_count: int

    @property
    def target_name(self) -> str:
        return self.target_arn.rsplit(":", 1)[-1]

    def render(self) -> str:
        return json.dumps({"deadLetterTargetArn": self.target_arn, "maxReceiveCount": self.max_receive_count})


@dataclass(slots=True)
class QueueConfig:
    """The settable attributes of one queue, parsed to native types."""

    fifo: bool
    visibility_timeout: int = 30
    delay_seconds: int = 0
    retention_seconds: int = 345_600
    maximum_message_size: int = MAX_MESSAGE_SIZE
    receive_wait_seconds: int = 0
    redrive: RedrivePolicy | None = None
    content_based_dedup: bool = False
    dedup_scope: str = "queue"
    throughput_limit: str = "perQueue"
    sse_enabled: bool = True
    kms_reuse_seconds: int = 300
    opaque: dict[str, str] = field(default_factory=dict)


# Finds a queue by ARN for RedrivePolicy validation: returns its "is FIFO" flag, or None if missing.
DlqLookup = Callable[[str], bool | None]


def validate_name(name: object, fifo: bool) -> str:
    """The queue name if it is legal for its type, else AWS's InvalidParameterValue."""
    if not isinstance(name, str):
        raise errors.missing_parameter("QueueName")
    pattern = _FIFO_NAME if fifo else _STANDARD_NAME
    if pattern.fullmatch(name) is None:
        if fifo:
            raise errors.invalid_parameter(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, "
                "must end with .fifo suffix and be 1 to 80 in length."
            )
        raise errors.invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    return name


def is_fifo_request(name: str, attributes: Mapping[str, str]) -> bool:
    """Whether CreateQueue asks for a FIFO queue (FifoQueue=true); the name is checked separately."""
    flag = attributes.get("FifoQueue")
    if flag is None:
        return False
    if flag.lower() not in ("true", "false"):
        raise errors.invalid_attribute_value("FifoQueue")
    return flag.lower() == "true"


def new_config(fifo: bool, attributes: Mapping[str, str], dlq_lookup: DlqLookup) -> QueueConfig:
    """A validated config for CreateQueue."""
    config = QueueConfig(fifo=fifo)
    rest = {key: value for key, value in attributes.items() if key != "FifoQueue"}
    apply_attributes(config, rest, dlq_lookup)
    return config


def apply_attributes(config: QueueConfig, attributes: Mapping[str, str], dlq_lookup: DlqLookup) -> None:
    """Validate every attribute first, then apply them all (AWS applies none when one is invalid)."""
    parsed = [(key, _parse(config, key, value, dlq_lookup)) for key, value in attributes.items()]
    for key, value in parsed:
        _assign(config, key, value)


def _parse(config: QueueConfig, key: str, value: object, dlq_lookup: DlqLookup) -> object:
    if not isinstance(value, str):
        raise errors.invalid_attribute_value(key)
    if key not in SETTABLE or (key in _FIFO_ONLY and not config.fifo):
        raise errors.invalid_attribute_name(key)
    if key in _INT_RANGES:
        return _parse_int(key, value)
    if key == "RedrivePolicy":
        return _parse_redrive(value, config.fifo, dlq_lookup)
    if key == "ContentBasedDeduplication" or key in _BOOLEAN:
        return _parse_bool(key, value)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise errors.invalid_attribute_value(key)
    return value


def _parse_int(key: str, value: str) -> int:
    low, high = _INT_RANGES[key]
    try:
        number = int(value)
    except ValueError:
        raise errors.invalid_attribute_value(key) from None
    if not low <= number <= high:
        raise errors.invalid_attribute_value(key)
    return number


def _parse_bool(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise errors.invalid_attribute_value(key)
    return value.lower() == "true"


def _parse_redrive(value: str, fifo: bool, dlq_lookup: DlqLookup) -> RedrivePolicy | None:
    if value == "":
        return None
    try:
        raw = json.loads(value)
        arn = raw["deadLetterTargetArn"]
        count = int(raw["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        raise errors.invalid_value(
            "RedrivePolicy", value, "Redrive policy is not a valid JSON map."
        ) from None
    if not isinstance(arn, str) or not 1 <= count <= 1000:
        raise errors.invalid_value("RedrivePolicy", value, "Invalid value for maxReceiveCount.")
    target_fifo = dlq_lookup(arn)
    if target_fifo is None:
        raise errors.invalid_value("RedrivePolicy", value, "Dead letter target does not exist.")
    if target_fifo != fifo:
        raise errors.invalid_value("RedrivePolicy", value, "Dead-letter queue must be same type of queue.")
    return RedrivePolicy(arn, count)


_FIELDS = {
    "VisibilityTimeout": "visibility_timeout",
    "DelaySeconds": "delay_seconds",
    "MessageRetentionPeriod": "retention_seconds",
    "MaximumMessageSize": "maximum_message_size",
    "ReceiveMessageWaitTimeSeconds": "receive_wait_seconds",
    "KmsDataKeyReusePeriodSeconds": "kms_reuse_seconds",
    "RedrivePolicy": "redrive",
    "ContentBasedDeduplication": "content_based_dedup",
    "DeduplicationScope": "dedup_scope",
    "FifoThroughputLimit": "throughput_limit",
    "SqsManagedSseEnabled": "sse_enabled",
}


def _assign(config: QueueConfig, key: str, value: object) -> None:
    if key in _OPAQUE:
        assert isinstance(value, str)
        if value:
            config.opaque[key] = value
        else:
            config.opaque.pop(key, None)
        return
    setattr(config, _FIELDS[key], value)


def render(config: QueueConfig) -> dict[str, str]:
    """The configurable attributes as AWS returns them (strings, booleans lower-case)."""
    out = {
        "VisibilityTimeout": str(config.visibility_timeout),
        "MaximumMessageSize": str(config.maximum_message_size),
        "MessageRetentionPeriod": str(config.retention_seconds),
        "DelaySeconds": str(config.delay_seconds),
        "ReceiveMessageWaitTimeSeconds": str(config.receive_wait_seconds),
        "SqsManagedSseEnabled": _bool(config.sse_enabled),
    }
    if config.redrive is not None:
        out["RedrivePolicy"] = config.redrive.render()
    if "KmsMasterKeyId" in config.opaque:
        out["KmsDataKeyReusePeriodSeconds"] = str(config.kms_reuse_seconds)
    out.update(config.opaque)
    if config.fifo:
        out["FifoQueue"] = "true"
        out["ContentBasedDeduplication"] = _bool(config.content_based_dedup)
        out["DeduplicationScope"] = config.dedup_scope
        out["FifoThroughputLimit"] = config.throughput_limit
    return out


def _bool(value: bool) -> str:
    return "true" if value else "false"
