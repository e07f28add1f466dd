"""Which messages are extended-client S3 pointers (pure logic; the resolution is tested against
moto's S3 in tests/component/pipeline/test_s3_pointers.py)."""

from __future__ import annotations

import json

import pytest

from asqsd.clients.s3 import S3Object, S3ObjectError
from asqsd.clients.worker.base import DeliveryResult, Request
from asqsd.config import load_settings
from asqsd.errors import ConfigError
from asqsd.message import Message, MessageAttribute
from asqsd.pipeline.s3_pointer import PointerResolver, S3Pointer, find_pointer, is_s3_failure

CURRENT = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY = "com.amazon.sqs.javamessaging.MessageS3Pointer"


def message(body: object, **attributes: str) -> Message:
    text = body if isinstance(body, str) else json.dumps(body)
    attrs = {name: MessageAttribute("Number", value) for name, value in attributes.items()}
    return Message("id", "rh", text, message_attributes=attrs)


@pytest.mark.parametrize("cls", [CURRENT, LEGACY])
@pytest.mark.parametrize("attribute", ["ExtendedPayloadSize", "SQSLargePayloadSize"])
def test_both_library_formats_are_pointers(cls: str, attribute: str) -> None:
    found = find_pointer(message([cls, {"s3BucketName": "b", "s3Key": "a/k"}], **{attribute: "12"}))
    assert found == S3Pointer("b", "a/k", 12, attribute)


@pytest.mark.parametrize(
    "body",
    [
        [CURRENT, {"s3BucketName": "b", "s3Key": "k"}, {}],
        [CURRENT],
        ["x.Pointer", {"s3BucketName": "b", "s3Key": "k"}],
        [CURRENT, {"s3BucketName": "b"}],
        [CURRENT, {"s3BucketName": "", "s3Key": "k"}],
        [CURRENT, {"s3BucketName": 1, "s3Key": "k"}],
        [CURRENT, ["b", "k"]],
        {"s3BucketName": "b", "s3Key": "k"},
        "[not json",
        "plain text",
    ],
)
def test_other_shapes_are_not_pointers(body: object) -> None:
    assert find_pointer(message(body, ExtendedPayloadSize="3")) is None


def test_no_size_attribute_no_pointer() -> None:
    assert find_pointer(message([CURRENT, {"s3BucketName": "b", "s3Key": "k"}])) is None


@pytest.mark.parametrize("size", ["", "-1", "abc"])
def test_unreadable_size_is_not_checked(size: str) -> None:
    found = find_pointer(message([CURRENT, {"s3BucketName": "b", "s3Key": "k"}], ExtendedPayloadSize=size))
    assert found is not None and found.size is None


def test_size_header_is_taken_off_a_resolved_request_only() -> None:
    resolver = PointerResolver(None, frozenset({200}))  # type: ignore[arg-type]  # no S3 call here
    headers = {"X-Aws-Sqsd-Attr-Extendedpayloadsize": "3", "X-Aws-Sqsd-Attr-Kind": "k"}
    request = Request("/", b"", dict(headers))
    assert resolver.find(message("plain", ExtendedPayloadSize="3"), request) is None
    assert request.headers == headers
    pointer = message([CURRENT, {"s3BucketName": "b", "s3Key": "k"}], ExtendedPayloadSize="3")
    assert resolver.find(pointer, request) is not None
    assert request.headers == {"X-Aws-Sqsd-Attr-Kind": "k"}


def test_deleting_payloads_needs_resolving_them() -> None:
    """delete_s3_payload_after_success alone is a config error naming the setting it needs."""
    loaded = load_settings({"resolve_s3_pointers": True, "delete_s3_payload_after_success": True}, {})
    assert loaded.settings.delete_s3_payload_after_success
    with pytest.raises(ConfigError, match="delete_s3_payload_after_success needs resolve_s3_pointers"):
        load_settings({"delete_s3_payload_after_success": True}, {})


def test_request_signing_and_streamed_s3_payloads_are_refused_together() -> None:
    """A signature covers the whole body, which a streamed S3 payload never is before the POST."""
    both = {"resolve_s3_pointers": True, "request_signing_secret_env": "SECRET"}
    with pytest.raises(ConfigError, match="request signing cannot sign S3 payloads"):
        load_settings(both, {})
    bearer = {"resolve_s3_pointers": True, "worker_bearer_token_env": "TOKEN"}
    assert load_settings(bearer, {}).settings.resolve_s3_pointers


class MissingObjects:
    """S3 without the object: GetObject answers NoSuchKey."""

    async def open(self, bucket: str, key: str) -> S3Object:
        raise S3ObjectError(404, "NoSuchKey", "The specified key does not exist.")


class NoWorker:
    base_url = "http://127.0.0.1:9"

    async def post(self, request: Request) -> DeliveryResult:
        raise AssertionError("nothing may be POSTed without the payload")


async def test_s3_failures_are_told_apart_from_the_workers() -> None:
    """A fetch failure is marked as S3's (the worker outage must not count it); worker results,
    connection failures included, are not."""
    resolver = PointerResolver(MissingObjects(), frozenset({200}))  # type: ignore[arg-type]
    pointer = S3Pointer("b", "k", 3, "ExtendedPayloadSize")
    result = await resolver.post(NoWorker(), Request("/", b"", {}), pointer, message("x"))
    assert (result.status, result.error) == (None, "S3 payload unavailable: NoSuchKey")
    assert is_s3_failure(result)
    assert not is_s3_failure(DeliveryResult(None, "connection failed: Connection refused", 0.0))
    assert not is_s3_failure(DeliveryResult(500, None, 0.0))
