"""S3 pointers of the AWS extended client libraries, resolved into the POST (``resolve_s3_pointers``).

A producer using an extended client library puts a large body in S3 and sends a pointer. A
message is a pointer when its body is a JSON array of exactly two items, a pointer class name
(:data:`POINTER_CLASSES`) and an object with string ``s3BucketName`` and ``s3Key``, *and* it
carries the size attribute (:data:`SIZE_ATTRIBUTES`); anything else is delivered unchanged.

:class:`PointerResolver` GETs the object afresh for every POST attempt and streams it into the
POST in chunks (``Content-Length`` from S3), so a delivery never holds the whole object. The size
attribute is not forwarded as ``X-Aws-Sqsd-Attr-*``: the worker sees the payload as if it had
been sent directly, as the extended clients present it. Any S3 problem is a failed delivery with
one ``s3-pointer-fetch-failed`` line; the message is left to SQS. With
``delete_s3_payload_after_success`` the object is deleted only once SQS confirmed the message's
delete: a redelivered copy (a failed delete) still finds its payload.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from asqsd.clients.s3 import S3ObjectError, S3Objects
from asqsd.clients.worker.base import BodyStream, BodyStreamError, DeliveryResult, Request, WorkerPoster
from asqsd.logs import get_logger
from asqsd.message import Message
from asqsd.pipeline.request import wire_name

log = get_logger("s3-pointer")

POINTER_CLASSES = frozenset(
    {
        "software.amazon.payloadoffloading.PayloadS3Pointer",  # current Java, Python and JS libraries
        "com.amazon.sqs.javamessaging.MessageS3Pointer",  # the Java library before 2.0
    }
)
SIZE_ATTRIBUTES = ("ExtendedPayloadSize", "SQSLargePayloadSize")  # current, legacy
_SIZE_HEADERS = tuple(wire_name("X-Aws-Sqsd-Attr-" + name) for name in SIZE_ATTRIBUTES)
# Deletes of payload objects still running at shutdown get this long, then are left undone.
DELETE_DRAIN_S = 5.0
# DeliveryResult.error of a delivery that failed on S3's side.
S3_FAILURE_PREFIX = "S3 payload unavailable: "


def is_s3_failure(result: DeliveryResult) -> bool:
    """The delivery failed because S3 could not give the payload whole: it says nothing of the
    worker, so the worker outage state machine must not count it either way."""
    return result.status is None and (result.error or "").startswith(S3_FAILURE_PREFIX)


@dataclass(frozen=True, slots=True)
class S3Pointer:
    """Where a message's payload is, and the size its attribute announces (None: unreadable)."""

    bucket: str
    key: str
    size: int | None
    size_attribute: str


def find_pointer(message: Message) -> S3Pointer | None:
    """The extended-client pointer ``message`` carries, or None for any other message."""
    attributes = message.message_attributes
    size_attribute = next((name for name in SIZE_ATTRIBUTES if name in attributes), None)
    if size_attribute is None or not message.body.lstrip().startswith("["):
        return None
    try:
        parsed = json.loads(message.body)
    except ValueError:
        return None
    if not (isinstance(parsed, list) and len(parsed) == 2 and parsed[0] in POINTER_CLASSES):
        return None
    fields = parsed[1]
    if not isinstance(fields, dict):
        return None
    bucket, key = fields.get("s3BucketName"), fields.get("s3Key")
    if not (isinstance(bucket, str) and bucket and isinstance(key, str) and key):
        return None
    return S3Pointer(bucket, key, _size(attributes[size_attribute].string_value), size_attribute)


def _size(value: str | None) -> int | None:
    try:
        size = int(value or "")
    except ValueError:
        return None
    return size if size >= 0 else None


class PointerResolver:
    """Fetches pointed-to payloads into POSTs and deletes them after success when asked."""

    def __init__(
        self, s3: S3Objects, success_statuses: frozenset[int], *, delete_after_success: bool = False
    ) -> None:
        self._s3 = s3
        self._success = success_statuses
        self._delete_after_success = delete_after_success
        # Payloads of messages the worker accepted, by receipt handle, until SQS answers the delete.
        self._succeeded: dict[str, S3Pointer] = {}
        self._deletes: set[asyncio.Task[None]] = set()

    def find(self, message: Message, request: Request) -> S3Pointer | None:
        """The pointer ``message`` carries; if it has one, the size header is taken off ``request``."""
        pointer = find_pointer(message)
        if pointer is not None:
            for header in _SIZE_HEADERS:
                request.headers.pop(header, None)
        return pointer

    async def post(
        self, worker: WorkerPoster, request: Request, pointer: S3Pointer, message: Message
    ) -> DeliveryResult:
        """GET the payload and stream it into one POST of ``request``; a failed delivery when S3
        cannot give it whole (the POST is then cut off, or never started)."""
        started = time.monotonic()
        try:
            obj = await self._s3.open(pointer.bucket, pointer.key)
        except S3ObjectError as exc:
            return self._failed(message, pointer, exc.status, exc.code, str(exc), started)
        chunks = obj.chunks()
        try:
            if pointer.size is not None and obj.length != pointer.size:
                detail = f"the object is {obj.length} bytes, {pointer.size_attribute} says {pointer.size}"
                return self._failed(message, pointer, 200, "SizeMismatch", detail, started)
            request.stream = BodyStream(obj.length, chunks)
            try:
                result = await worker.post(request)
            except BodyStreamError as exc:
                cause = exc.__cause__
                status, code = (
                    (cause.status, cause.code) if isinstance(cause, S3ObjectError) else (200, "ReadFailed")
                )
                return self._failed(message, pointer, status, code, f"{exc}; the POST was cut off", started)
        finally:
            request.stream = None
            await chunks.aclose()
            obj.close()
        if self._delete_after_success and result.status in self._success:
            self._succeeded[message.receipt_handle] = pointer
        return result

    def _failed(
        self, message: Message, pointer: S3Pointer, status: int | None, code: str, error: str, started: float
    ) -> DeliveryResult:
        log.warning(
            "s3-pointer-fetch-failed",
            message_id=message.message_id,
            bucket=pointer.bucket,
            key=pointer.key,
            status=status,
            code=code,
            error=error,
        )
        return DeliveryResult(None, f"{S3_FAILURE_PREFIX}{code}", time.monotonic() - started)

    def message_deleted(self, message: Message, failure: str | None) -> None:
        """The settler's answer for a delete: once SQS confirmed it, delete the payload too."""
        pointer = self._succeeded.pop(message.receipt_handle, None)
        if pointer is None or failure is not None:
            return  # not a resolved pointer, or the message stays: so does its payload
        task = asyncio.get_running_loop().create_task(self._delete(message, pointer))
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def _delete(self, message: Message, pointer: S3Pointer) -> None:
        try:
            await self._s3.delete(pointer.bucket, pointer.key)
        except S3ObjectError as exc:
            log.warning(
                "s3-payload-delete-failed",
                message_id=message.message_id,
                bucket=pointer.bucket,
                key=pointer.key,
                status=exc.status,
                code=exc.code,
                detail="the message was processed and deleted; the object stays in S3",
            )

    async def aclose(self) -> None:
        """Let payload deletes still running finish, within :data:`DELETE_DRAIN_S`."""
        if self._deletes:
            _done, pending = await asyncio.wait(set(self._deletes), timeout=DELETE_DRAIN_S)
            for task in pending:
                task.cancel()
