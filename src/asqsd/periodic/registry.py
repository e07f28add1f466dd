"""The DynamoDB registry table: typed get / conditional put / update on items keyed by ``id``.

The leader election and the scheduler's exactly-once claims both live in this table (stock:
``AWSEBWorkerCronLeaderRegistry``). Calls go through :class:`~asqsd.clients.dynamodb.DynamoDBTable`,
so transient errors are retryable :class:`~asqsd.clients.dynamodb.DynamoDBError` and permanent ones
a :class:`~asqsd.clients.dynamodb.TableUnavailableError` whose hint names the permission or
setting to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asqsd.clients.dynamodb import DynamoDBTable, decode_item, encode_value
from asqsd.logs import get_logger

log = get_logger("leader")


class RegistryTable:
    """The DynamoDB registry table, on an aiobotocore DynamoDB client created elsewhere.

    Items are plain dicts: strings stay strings, numbers come back as :class:`~decimal.Decimal`.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self._table = DynamoDBTable(
            client,
            table_name,
            setting="registry_table",
            actions="dynamodb:GetItem, PutItem and UpdateItem",
            key="id (string)",
        )
        self.name = table_name

    async def get(self, item_id: str) -> dict[str, object] | None:
        """Strongly consistent GetItem; None when the item does not exist."""
        response = await self._table.call("get_item", Key={"id": {"S": item_id}}, ConsistentRead=True)
        item = (response or {}).get("Item")
        return None if item is None else decode_item(item)

    async def put_if_absent(self, item_id: str, values: Mapping[str, object]) -> bool:
        """PutItem only if no item has this id; False if one already existed."""
        item = {"id": {"S": item_id}, **{k: encode_value(v) for k, v in values.items()}}
        response = await self._table.call(
            "put_item", Item=item, ConditionExpression="attribute_not_exists(id)"
        )
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
            kwargs["ExpressionAttributeValues"] = {k: encode_value(v) for k, v in values.items()}
        if condition is not None:
            kwargs["ConditionExpression"] = condition
        response = await self._table.call("update_item", **kwargs)
        if response is None:
            return None
        return decode_item(response.get("Attributes") or {})

    async def create_if_missing(self) -> bool:
        """Create the table (key ``id`` string, on-demand) unless it exists; True if created.

        Only for tests and ``asqsd local``: on Elastic Beanstalk the table belongs to the
        environment's CloudFormation stack, and the instance role may not create tables.
        """
        created = await self._table.create_if_missing([("id", "S")])
        if created:
            log.info("registry-table-created", table=self.name)
        return created
