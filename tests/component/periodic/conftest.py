"""Fixtures for the periodic-task component tests: DynamoDB on moto_server and a registry table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from asqsd.periodic.registry import RegistryTable
from tests.support.dynamo import dynamodb_client, new_registry


@pytest.fixture
async def dynamodb(moto_url: str) -> AsyncIterator[Any]:
    """An aiobotocore DynamoDB client on moto_server."""
    async with dynamodb_client(moto_url) as client:
        yield client


@pytest.fixture
async def registry(dynamodb: Any) -> RegistryTable:
    """A fresh registry table."""
    return await new_registry(dynamodb)
