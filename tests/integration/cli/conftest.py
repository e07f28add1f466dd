"""Fixtures of the CLI subprocess tests: the project's SQS emulator with one queue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asqsd.emulator import Emulator

QUEUE = "jobs"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """The SQS emulator on a free loopback port, with the queue ``jobs``."""
    async with Emulator(host="127.0.0.1", port=0, seed=11) as emulator:
        emulator.create_queue(QUEUE, {"VisibilityTimeout": "30"})
        yield emulator
