"""One contract suite, two servers: every test runs against moto_server and against the emulator.

Tests marked ``aws_strict`` check behaviour where AWS is stricter than moto; the emulator follows AWS, so on
moto those tests are expected to fail (``xfail(strict=True)``: if moto ever gets stricter, we hear about it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.emulator.conftest import emulator  # noqa: F401 - re-exported fixture
from tests.emulator.support import sqs_client

BACKENDS = ["moto", "emulator"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "aws_strict(reason): AWS behaviour moto does not implement; xfail(strict) on moto"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("aws_strict")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or callspec.params.get("backend") != "moto":
            continue
        reason = marker.args[0] if marker.args else "moto is more lenient than AWS here"
        item.add_marker(pytest.mark.xfail(strict=True, reason=f"moto: {reason}"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def endpoint(backend: str, request: pytest.FixtureRequest) -> str:
    """Base URL of the server under test (moto is shared by the session; the emulator is per test)."""
    if backend == "moto":
        return str(request.getfixturevalue("moto_url"))
    return str(request.getfixturevalue("emulator").endpoint_url)


@pytest.fixture
async def sqs(endpoint: str) -> AsyncIterator[Any]:
    async with sqs_client(endpoint) as client:
        yield client
