"""Helpers for the emulator and contract suites: SQS clients, unique names, a controllable clock."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config

# No retries: a test sees exactly the response the server sent.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)


@contextlib.asynccontextmanager
async def sqs_client(
    endpoint_url: str, config: Config = NO_RETRIES, service: str = "sqs"
) -> AsyncIterator[Any]:
    """An aiobotocore SQS client (or another ``service``'s) pointed at a loopback endpoint with
    fake credentials."""
    session = get_session()
    async with session.create_client(
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    ) as client:
        yield client


def unique(prefix: str = "q") -> str:
    """A queue name no other test uses (moto is shared by the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class FakeClock:
    """A clock for :class:`asqsd.emulator.Store` that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
