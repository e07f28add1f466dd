"""Session-wide fixtures: AWS test credentials, a moto_server subprocess on loopback (and one that
enforces IAM), and a recording worker (the reliability suite overrides ``worker`` with its ledger
worker)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import settings

from tests.support.iam import IamMoto, run_iam_moto_server
from tests.support.servers import run_moto_server
from tests.support.worker import RecordingWorker, recording_worker

# Fake credentials and region for every client the tests create; nothing here reaches AWS.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

# Hypothesis fails an example that takes over 200 ms by default: a wall-clock speed check, which the
# suite running on several xdist workers (pyproject addopts) on shared cores would trip at random.
settings.register_profile("asqsd", deadline=None)
settings.load_profile("asqsd")


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a moto_server (SQS + DynamoDB) shared by the whole session."""
    with run_moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="session")
def serial_moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto_server that serves one request at a time, for tests that rely on DynamoDB conditional
    writes being atomic (moto's threaded server can let two racing ``attribute_not_exists`` writes
    both succeed). No long polls here: one would stall every other request."""
    with run_moto_server(tmp_path_factory.mktemp("moto-serial") / "moto.log", threaded=False) as url:
        yield url


@pytest.fixture(scope="session")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    """A second moto_server that enforces IAM (signatures and policies), with an admin user."""
    with run_iam_moto_server(tmp_path_factory.mktemp("moto-iam") / "moto.log") as server:
        yield server


@pytest.fixture
async def worker() -> AsyncIterator[RecordingWorker]:
    """A recording aiohttp worker on 127.0.0.1 answering 200 unless a test changes its handler."""
    async with recording_worker() as recorder:
        yield recorder
