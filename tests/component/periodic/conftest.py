"""Fixtures for the periodic-task component tests: a registry table (``dynamodb``, the client on
moto_server, comes from tests/component/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from asqsd.periodic.registry import RegistryTable
from tests.support.dynamo import new_registry


@pytest.fixture
async def registry(dynamodb: Any) -> RegistryTable:
    """A fresh registry table."""
    return await new_registry(dynamodb)
