"""SQS errors as the JSON protocol reports them.

Every error carries the smithy shape name (``__type``) and the legacy query code that AWS sends in the
``x-amzn-query-error`` header.  botocore needs both: the header's code becomes ``Error.Code`` and the shape
name selects the modelled exception class (``client.exceptions.QueueDoesNotExist`` ...).
"""

from __future__ import annotations

SENDER = "Sender"
RECEIVER = "Receiver"


class SqsError(Exception):
    """An SQS API error: HTTP status, smithy shape, query-compatible code, fault side and message."""

    def __init__(
        self, shape: str, message: str, *, status: int = 400, code: str | None = None, fault: str = SENDER
    ) -> None:
        super().__init__(message)
        self.shape = shape
        self.message = message
        self.status = status
        self.code = code or shape
        self.fault = fault

    @property
    def sender_fault(self) -> bool:
        """True when the caller is to blame (the ``SenderFault`` of a batch entry)."""
        return self.fault == SENDER


def queue_does_not_exist() -> SqsError:
    return SqsError(
        "QueueDoesNotExist",
        "The specified queue does not exist.",
        code="AWS.SimpleQueueService.NonExistentQueue",
    )


def queue_name_exists(name: str, attribute: str) -> SqsError:
    return SqsError(
        "QueueNameExists",
        f"A queue already exists with the same name and a different value for attribute {attribute}",
        code="QueueAlreadyExists",
    )


def invalid_parameter(message: str) -> SqsError:
    return SqsError("InvalidParameterValueException", message, code="InvalidParameterValue")


def invalid_value(parameter: str, value: object, reason: str) -> SqsError:
    return invalid_parameter(f"Value {value} for parameter {parameter} is invalid. Reason: {reason}")


def missing_parameter(name: str) -> SqsError:
    return SqsError(
        "MissingRequiredParameterException",
        f"The request must contain the parameter {name}.",
        code="MissingParameter",
    )


def invalid_attribute_name(name: str) -> SqsError:
    return SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")


def invalid_attribute_value(name: str, reason: str = "") -> SqsError:
    suffix = f" Reason: {reason}" if reason else ""
    return SqsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.{suffix}")


def receipt_handle_invalid(handle: str) -> SqsError:
    return SqsError(
        "ReceiptHandleIsInvalid", f'The input receipt handle "{handle}" is not a valid receipt handle.'
    )


def message_not_inflight() -> SqsError:
    return SqsError(
        "MessageNotInflight",
        "The message referred to isn't in flight.",
        code="AWS.SimpleQueueService.MessageNotInflight",
    )


def message_gone(handle: str) -> SqsError:
    # AWS's wording when the message behind a well-formed handle was deleted or expired.
    return invalid_value(
        "ReceiptHandle", handle, "Message does not exist or is not available for visibility timeout change."
    )


def invalid_message_contents(message: str) -> SqsError:
    return SqsError("InvalidMessageContents", message)


def empty_batch(operation: str) -> SqsError:
    entry = operation + "RequestEntry"
    return SqsError(
        "EmptyBatchRequest",
        f"There should be at least one {entry} in the request.",
        code="AWS.SimpleQueueService.EmptyBatchRequest",
    )


def too_many_entries(count: int) -> SqsError:
    return SqsError(
        "TooManyEntriesInBatchRequest",
        f"Maximum number of entries per request are 10. You have sent {count}.",
        code="AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    )


def ids_not_distinct(entry_id: str) -> SqsError:
    return SqsError(
        "BatchEntryIdsNotDistinct",
        f"Id {entry_id} repeated.",
        code="AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    )


def invalid_batch_entry_id() -> SqsError:
    return SqsError(
        "InvalidBatchEntryId",
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
        "It can be at most 80 letters long.",
        code="AWS.SimpleQueueService.InvalidBatchEntryId",
    )


def batch_too_long(size: int, limit: int) -> SqsError:
    return SqsError(
        "BatchRequestTooLong",
        f"Batch requests cannot be longer than {limit} bytes. You have sent {size} bytes.",
        code="AWS.SimpleQueueService.BatchRequestTooLong",
    )


def purge_in_progress(name: str) -> SqsError:
    return SqsError(
        "PurgeQueueInProgress",
        f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.",
        status=403,
        code="AWS.SimpleQueueService.PurgeQueueInProgress",
    )


def unknown_operation(target: str) -> SqsError:
    return SqsError("UnknownOperationException", f"Unknown operation {target}", code="UnknownOperation")


def serialization_error(message: str) -> SqsError:
    return SqsError("SerializationException", message, code="SerializationException")


def internal_error(message: str = "We encountered an internal error. Please try again.") -> SqsError:
    return SqsError("InternalError", message, status=500, fault=RECEIVER)


def service_unavailable(message: str = "The service is unavailable. Please try again shortly.") -> SqsError:
    return SqsError("ServiceUnavailable", message, status=503, fault=RECEIVER)


def throttling(message: str = "Rate exceeded") -> SqsError:
    # botocore's standard and legacy retry modes both treat ThrottlingException/400 as throttling.
    return SqsError("ThrottlingException", message)


def request_throttled(message: str = "Request is throttled.") -> SqsError:
    # SQS's own modelled throttling error; legacy retry mode matches it only with HTTP 403.
    return SqsError("RequestThrottled", message, status=403)


def expired_token(message: str = "The security token included in the request is expired") -> SqsError:
    # What AWS answers for temporary credentials past their expiry (query code ExpiredToken, 403).
    return SqsError("ExpiredTokenException", message, status=403, code="ExpiredToken")
