"""DynamoDB: the client asqsd opens, the calls on one table, and errors that say what to fix.

Two parts use a DynamoDB table: the periodic tasks' registry (``registry_table``, leader election)
and duplicate suppression (``dedup_table``). Both go through :class:`DynamoDBTable`, which turns
botocore errors into :class:`DynamoDBError` (``retryable`` set when trying again later may help)
or :class:`TableUnavailableError` (the table cannot be used: missing, access denied, wrong key
schema), and store plain Python values as DynamoDB attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from asqsd.errors import AsqsdError, StartupError

# DynamoDB error codes worth retrying after a pause; anything 5xx, 429 or transport-level too.
_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_CONDITION_FAILED = "ConditionalCheckFailedException"
_ACCESS_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}
)
_TABLE_READY_TIMEOUT_S = 60.0


class DynamoDBError(AsqsdError):
    """A DynamoDB call failed. ``retryable`` tells whether trying again later may help."""

    def __init__(self, operation: str, table: str, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"DynamoDB {operation} on table {table!r} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.retryable = retryable


class TableUnavailableError(DynamoDBError, StartupError):
    """The table cannot be used at all (missing, access denied, bad credentials, wrong key...).

    Retrying will not help, so callers raise it at start-up instead of spinning.
    """


def client_config() -> Any:
    """The client configuration: no SDK retries (asqsd's callers retry and log), short timeouts."""
    from aiobotocore.config import AioConfig

    return AioConfig(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)


async def open_dynamodb(session: Any, region: str | None, stack: contextlib.AsyncExitStack) -> Any:
    """An aiobotocore DynamoDB client from the daemon's session, closed with ``stack``.

    No endpoint_url: botocore reads AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL.
    """
    return await stack.enter_async_context(
        session.create_client("dynamodb", region_name=region, config=client_config())
    )


def encode_value(value: object) -> dict[str, str]:
    """A string, integer, Decimal or float as a DynamoDB attribute value."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        raise TypeError("booleans are not stored")
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": f"{value:.6f}"}  # microseconds are plenty for a lease or a start time
    raise TypeError(f"cannot store {type(value).__name__}")


def decode_value(attribute: Mapping[str, Any]) -> object:
    """An attribute value back as ``str`` or :class:`~decimal.Decimal` (other types as given)."""
    if "S" in attribute:
        return str(attribute["S"])
    if "N" in attribute:
        # Decimal keeps the stored digits exactly: a value read and written back in a condition
        # must compare equal even when another writer used more digits than a float holds.
        return Decimal(str(attribute["N"]))
    return dict(attribute)


def decode_item(item: Mapping[str, Any]) -> dict[str, object]:
    """A whole item (attribute name → value) decoded with :func:`decode_value`."""
    return {str(name): decode_value(value) for name, value in item.items()}


class DynamoDBTable:
    """One table on an aiobotocore DynamoDB client created elsewhere.

    ``setting`` names the option that chose the table, ``actions`` the IAM actions the table's
    user needs and ``key`` the key the table must have; they go into the hint of a
    :class:`TableUnavailableError`.
    """

    def __init__(self, client: Any, name: str, *, setting: str, actions: str, key: str) -> None:
        if not name:
            raise ValueError(f"the table needs a name ({setting})")
        self._client = client
        self.name = name
        self._setting = setting
        self._actions = actions
        self._key = key

    async def call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """``client.<method>(TableName=..., **kwargs)``; None when its condition did not hold.

        Everything else that goes wrong becomes a :class:`DynamoDBError`.
        """
        operation = "".join(part.capitalize() for part in method.split("_"))
        try:
            response: dict[str, Any] = await getattr(self._client, method)(TableName=self.name, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown")).rsplit("#", 1)[-1]
            if code == _CONDITION_FAILED:
                return None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = str(error.get("Message", ""))
            if status >= 500 or status == 429 or code in _RETRYABLE_CODES:
                raise DynamoDBError(operation, self.name, code, message, retryable=True) from exc
            raise TableUnavailableError(
                operation, self.name, code, f"{message} {self._hint(code)}".strip(), retryable=False
            ) from exc
        except (BotoCoreError, OSError) as exc:
            # Endpoint down, connection reset, read timeout, credentials not there yet (an
            # instance profile can be briefly unavailable at boot): all worth another try.
            raise DynamoDBError(operation, self.name, type(exc).__name__, str(exc), retryable=True) from exc
        return response

    async def create_if_missing(self, key: Sequence[tuple[str, str]]) -> bool:
        """Create the table (on-demand) unless it exists; True if created.

        ``key`` is ``(attribute name, "S" or "N")`` for the hash key, then optionally the range
        key. Only for tests and ``asqsd local``: in an Elastic Beanstalk environment the tables
        belong to the operator, and the instance role may not create tables.
        """
        if not 1 <= len(key) <= 2:
            raise ValueError("a table key is a hash key and at most one range key")
        try:
            await self.call(
                "create_table",
                KeySchema=[
                    {"AttributeName": name, "KeyType": kind}
                    for (name, _type), kind in zip(key, ("HASH", "RANGE"), strict=False)
                ],
                AttributeDefinitions=[{"AttributeName": name, "AttributeType": kind} for name, kind in key],
                BillingMode="PAY_PER_REQUEST",
            )
        except DynamoDBError as exc:
            if exc.code == "ResourceInUseException":
                return False
            raise
        await self._wait_active()
        return True

    async def _wait_active(self) -> None:
        deadline = time.monotonic() + _TABLE_READY_TIMEOUT_S
        while True:
            response = await self.call("describe_table")
            if (response or {}).get("Table", {}).get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise TableUnavailableError(
                    "DescribeTable", self.name, "NotActive", "table did not become ACTIVE", retryable=False
                )
            await asyncio.sleep(0.5)

    def _hint(self, code: str) -> str:
        if code == "ResourceNotFoundException":
            return f"(check {self._setting}: it must name an existing table in this region)"
        if code in _ACCESS_CODES:
            return f"(the instance role needs {self._actions} on the {self._setting} table)"
        if code == "ValidationException":
            return f"(check {self._setting}: the table's key must be {self._key})"
        return ""
