"""Fixtures: an in-process emulator on the test's own event loop, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from asqsd.emulator import Emulator
from tests.emulator.support import sqs_client


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A fresh emulator on 127.0.0.1 with a free port, stopped after the test."""
    async with Emulator(host="127.0.0.1", port=0, seed=1234) as emu:
        yield emu


@pytest.fixture
async def sqs(emulator: Emulator) -> AsyncIterator[Any]:
    """An aiobotocore SQS client for :func:`emulator` (no retries)."""
    async with sqs_client(emulator.endpoint_url) as client:
        yield client
