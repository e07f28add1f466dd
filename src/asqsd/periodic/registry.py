"""The DynamoDB registry table: typed get / conditional put / update, with errors that explain.

The leader election and the scheduler's exactly-once claims both live in this table (stock:
``AWSEBWorkerCronLeaderRegistry``). Transient errors are marked retryable; permanent ones carry a
hint naming the permission or setting to fix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from asqsd.errors import AsqsdError, StartupError
from asqsd.logs import get_logger

log = get_logger("leader")

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


_TABLE_READY_TIMEOUT_S = 60.0


class RegistryError(AsqsdError):
    """A registry-table call failed. ``retryable`` tells whether trying again later may help."""

    def __init__(self, operation: str, table: str, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"DynamoDB {operation} on table {table!r} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.retryable = retryable


class RegistryUnavailableError(RegistryError, StartupError):
    """The registry table cannot be used at all (missing, access denied, bad credentials...).

    Retrying will not help, so the election and the scheduler raise it instead of spinning.
    """


def _is_retryable(code: str, http_status: int) -> bool:
    return http_status >= 500 or http_status == 429 or code in _RETRYABLE_CODES


def _encode(value: object) -> dict[str, str]:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        raise TypeError("booleans are not stored in the registry")
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": f"{value:.6f}"}  # microseconds are plenty for a lease
    raise TypeError(f"cannot store {type(value).__name__} in the registry")


def _decode(attribute: Mapping[str, Any]) -> object:
    if "S" in attribute:
        return str(attribute["S"])
    if "N" in attribute:
        # Decimal keeps the stored digits exactly: a value read and written back in a condition
        # must compare equal even when another writer used more digits than a float holds.
        return Decimal(str(attribute["N"]))
    return dict(attribute)


class RegistryTable:
    """The DynamoDB registry table, on an aiobotocore DynamoDB client created elsewhere.

    Items are plain dicts: strings stay strings, numbers come back as :class:`~decimal.Decimal`.
    Errors become :class:`RegistryError` (retryable) or :class:`RegistryUnavailableError`.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        if not table_name:
            raise ValueError("the registry table needs a name (registry_table)")
        self._client = client
        self.name = table_name

    async def get(self, item_id: str) -> dict[str, object] | None:
        """Strongly consistent GetItem; None when the item does not exist."""
        response = await self._call("get_item", Key={"id": {"S": item_id}}, ConsistentRead=True)
        item = (response or {}).get("Item")
        return None if item is None else {str(k): _decode(v) for k, v in item.items()}

    async def put_if_absent(self, item_id: str, values: Mapping[str, object]) -> bool:
        """PutItem only if no item has this id; False if one already existed."""
        item = {"id": {"S": item_id}, **{k: _encode(v) for k, v in values.items()}}
        response = await self._call("put_item", Item=item, ConditionExpression="attribute_not_exists(id)")
        return response is not None

    async def update(
        self,
        item_id: str,
        expression: str,
        values: Mapping[str, object],
        *,
        condition: str | None = None,
        return_old: bool = False,
    ) -> dict[str, object] | None:
        """UpdateItem; None if ``condition`` did not hold, else the old attributes (when
        ``return_old``) or an empty dict."""
        kwargs: dict[str, Any] = {
            "Key": {"id": {"S": item_id}},
            "UpdateExpression": expression,
            "ReturnValues": "UPDATED_OLD" if return_old else "NONE",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = {k: _encode(v) for k, v in values.items()}
        if condition is not None:
            kwargs["ConditionExpression"] = condition
        response = await self._call("update_item", **kwargs)
        if response is None:
            return None
        return {str(k): _decode(v) for k, v in (response.get("Attributes") or {}).items()}

    async def create_if_missing(self) -> bool:
        """Create the table (key ``id`` string, on-demand) unless it exists; True if created.

        Only for tests and ``asqsd local``: on Elastic Beanstalk the table belongs to the
        environment's CloudFormation stack, and the instance role may not create tables.
        """
        try:
            await self._call(
                "create_table",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except RegistryError as exc:
            if exc.code == "ResourceInUseException":
                return False
            raise
        await self._wait_active()
        log.info("registry-table-created", table=self.name)
        return True

    async def _wait_active(self) -> None:
        deadline = time.monotonic() + _TABLE_READY_TIMEOUT_S
        while True:
            response = await self._call("describe_table")
            if (response or {}).get("Table", {}).get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise RegistryUnavailableError(
                    "DescribeTable", self.name, "NotActive", "table did not become ACTIVE", retryable=False
                )
            await asyncio.sleep(0.5)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """``client.<method>(TableName=..., **kwargs)``; None when its condition did not hold.

        Everything else that goes wrong becomes a :class:`RegistryError`.
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
            if _is_retryable(code, status):
                raise RegistryError(operation, self.name, code, message, retryable=True) from exc
            raise RegistryUnavailableError(
                operation, self.name, code, f"{message} {_hint(code)}".strip(), retryable=False
            ) from exc
        except (BotoCoreError, OSError) as exc:
            # Endpoint down, connection reset, read timeout, credentials not there yet (an
            # instance profile can be briefly unavailable at boot): all worth another try.
            raise RegistryError(operation, self.name, type(exc).__name__, str(exc), retryable=True) from exc
        return response


def _hint(code: str) -> str:
    if code == "ResourceNotFoundException":
        return "(check registry_table: it must name an existing table in this region)"
    if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"):
        return "(the instance role needs dynamodb:GetItem, PutItem and UpdateItem on the registry table)"
    return ""
