"""Helpers for tests that use DynamoDB (leader election, the scheduler, dedup): clients, tables,
clocks."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiobotocore.session

from asqsd.clients.dynamodb import DynamoDBTable, client_config
from asqsd.periodic.registry import RegistryTable


@contextlib.asynccontextmanager
async def dynamodb_client(endpoint_url: str) -> AsyncIterator[Any]:
    """An aiobotocore DynamoDB client on moto_server, configured as the daemon should be:
    no SDK retries (the election retries itself) and short timeouts."""
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "dynamodb", endpoint_url=endpoint_url, region_name="us-east-1", config=client_config()
    ) as client:
        yield client


def unique_table_name() -> str:
    """A fresh table name, so tests sharing one moto_server never see each other's records."""
    return f"registry-{uuid.uuid4().hex[:12]}"


async def new_registry(client: Any) -> RegistryTable:
    """A freshly created, empty registry table."""
    registry = RegistryTable(client, unique_table_name())
    await registry.create_if_missing()
    return registry


async def new_dedup_table(client: Any) -> str:
    """A freshly created dedup table in the stock layout (hash key ``partition`` number, range
    key ``id`` string); returns its name."""
    name = f"dedup-{uuid.uuid4().hex[:12]}"
    table = DynamoDBTable(client, name, setting="dedup_table", actions="", key="")
    await table.create_if_missing([("partition", "N"), ("id", "S")])
    return name


class AcceleratedClock:
    """Wall-clock time running ``speed`` times faster than real time, from ``start``.

    Shared by several schedulers it gives them one consistent "now"; with ``speed=60`` a cron
    minute passes every real second.
    """

    def __init__(self, start: float, speed: float) -> None:
        self._start = start
        self._speed = speed
        self._origin = time.monotonic()

    def time(self) -> float:
        """The accelerated now, in epoch seconds."""
        return self._start + (time.monotonic() - self._origin) * self._speed

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock (``seconds / speed`` of real time)."""
        await asyncio.sleep(max(0.0, seconds) / self._speed)


class ManualClock:
    """A clock that only moves when the test calls :meth:`advance`; sleepers wake accordingly."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._moved = asyncio.Condition()
        self.sleepers = 0  # how many coroutines are asleep on this clock right now

    def time(self) -> float:
        """The current manual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Return once :meth:`advance` has moved the clock ``seconds`` past now."""
        deadline = self._now + seconds
        self.sleepers += 1
        try:
            async with self._moved:
                await self._moved.wait_for(lambda: self._now >= deadline)
        finally:
            self.sleepers -= 1

    async def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers whose deadline has passed."""
        self._now += seconds
        async with self._moved:
            self._moved.notify_all()
        await asyncio.sleep(0)
