"""Queue URL forms through the CLI: `asqsd config` prints the effective region and SQS endpoint with
their sources; `asqsd run` sends its calls to a loopback queue URL's own host; an AWS host whose
region cannot be told exits 2 before anything starts.

Nothing here may reach AWS: no test gives the daemon an AWS queue URL it could run with, the
loopback test checks the daemon's own client factory resolves the emulator before the daemon
starts, and every `asqsd run` gets HTTPS_PROXY pointing at a closed loopback port, so a call to an
https (AWS) endpoint by botocore fails on loopback instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiobotocore.session
import botocore.session
import pytest
from structlog.testing import capture_logs

from asqsd.clients.sqs.credential_chain import BotocoreChain
from asqsd.clients.sqs.endpoint import DEFAULT_REGION_SOURCE
from asqsd.clients.sqs.factory import open_sqs
from asqsd.config import EB_OPTION_NAMES, load_settings
from asqsd.emulator import Emulator
from tests.integration.cli.test_cli import asqsd
from tests.support.ledger import DaemonProcess
from tests.support.polling import wait_until
from tests.support.servers import free_loopback_port
from tests.support.worker import RecordingWorker
from tests.unit.clients.test_sqs_endpoint import FORMS

VPCE_HOST = "vpce-0a1b2c3d4e5f67890-abcdefgh.sqs.eu-central-1.vpce.amazonaws.com"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No inherited asqsd/AWS/EB setting, no AWS config file, no IMDS; test credentials; HTTPS
    calls go to a closed loopback proxy (so nothing can reach AWS by mistake)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASQSD_", "AWS_"))
        and key not in EB_OPTION_NAMES
        and "proxy" not in key.lower()
    }
    env.update(
        AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        HTTPS_PROXY=f"http://127.0.0.1:{free_loopback_port()}",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def config_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """`asqsd config` output as {key: (value, source)}."""
    rows = {}
    for line in stdout.splitlines():
        key, _, rest = line.partition(" ")
        value, _, source = rest.strip().rpartition("  [")
        rows[key] = (value, source.removesuffix("]"))
    return rows


@pytest.mark.parametrize(
    ("queue_url", "region", "region_source", "endpoint", "endpoint_source"),
    [
        (
            "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
            "eu-west-1",
            "queue URL (regional endpoint)",
            "https://sqs.eu-west-1.amazonaws.com",
            "botocore's endpoint for region eu-west-1 (queue URL: regional endpoint)",
        ),
        (
            "https://queue.amazonaws.com/123456789012/jobs",
            "us-east-1",
            "queue URL (legacy endpoint)",
            "https://sqs.us-east-1.amazonaws.com",
            "botocore's endpoint for region us-east-1 (queue URL: legacy endpoint)",
        ),
        (
            "https://ap-northeast-1.queue.amazonaws.com/123456789012/jobs",
            "ap-northeast-1",
            "queue URL (legacy endpoint)",
            "https://sqs.ap-northeast-1.amazonaws.com",
            "botocore's endpoint for region ap-northeast-1 (queue URL: legacy endpoint)",
        ),
        (
            f"https://{VPCE_HOST}/123456789012/jobs",
            "eu-central-1",
            "queue URL (VPC endpoint)",
            f"https://{VPCE_HOST}",
            "queue URL (VPC endpoint)",
        ),
        (
            "https://sqs-fips.us-east-2.amazonaws.com/123456789012/jobs",
            "us-east-2",
            "queue URL (FIPS endpoint)",
            "https://sqs-fips.us-east-2.amazonaws.com",
            "queue URL (FIPS endpoint)",
        ),
        (
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/jobs",
            "cn-north-1",
            "queue URL (regional endpoint)",
            "https://sqs.cn-north-1.amazonaws.com.cn",
            "botocore's endpoint for region cn-north-1 (queue URL: regional endpoint)",
        ),
        (
            "https://sqs.us-gov-west-1.amazonaws.com/123456789012/jobs",
            "us-gov-west-1",
            "queue URL (regional endpoint)",
            "https://sqs.us-gov-west-1.amazonaws.com",
            "botocore's endpoint for region us-gov-west-1 (queue URL: regional endpoint)",
        ),
        (
            "http://localhost:4566/queue/eu-west-3/000000000000/jobs",
            "eu-west-3",
            "queue URL (LocalStack path)",
            "http://localhost:4566",
            "queue URL (LocalStack path)",
        ),
        (
            "http://127.0.0.1:9324/000000000000/jobs",
            "us-east-1",
            DEFAULT_REGION_SOURCE,
            "http://127.0.0.1:9324",
            "queue URL (host that is not AWS)",
        ),
    ],
)
def test_config_prints_the_effective_region_and_endpoint_for_each_form(
    tmp_path: Path, queue_url: str, region: str, region_source: str, endpoint: str, endpoint_source: str
) -> None:
    """`asqsd config --queue-url <form>`: the region and endpoint the daemon would use, and why."""
    result = asqsd("config", "--queue-url", queue_url, env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = config_rows(result.stdout)
    assert rows["region"] == (region, region_source)
    assert rows["endpoint_url"] == (endpoint, endpoint_source)


def test_config_names_environment_file_and_flag_sources(tmp_path: Path) -> None:
    """Values from AWS_REGION / AWS_ENDPOINT_URL_SQS, the --config file and flags carry that source;
    a region setting that contradicts an AWS queue URL is kept and warned about."""
    loopback = "http://127.0.0.1:9324/000000000000/jobs"
    env = clean_env(tmp_path, AWS_REGION="ap-south-1", AWS_ENDPOINT_URL_SQS="http://127.0.0.1:4566")
    rows = config_rows(asqsd("config", "--queue-url", loopback, env=env).stdout)
    assert rows["region"] == ("ap-south-1", "env AWS_REGION")
    assert rows["endpoint_url"] == ("http://127.0.0.1:4566", "env AWS_ENDPOINT_URL_SQS")

    config = tmp_path / "default.yaml"
    config.write_text("region: eu-north-1\n")
    eu_west = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
    result = asqsd(
        "config",
        "--config",
        str(config),
        "--queue-url",
        eu_west,
        "--endpoint-url",
        "http://127.0.0.1:1",
        env=clean_env(tmp_path),
    )
    rows = config_rows(result.stdout)
    assert rows["region"] == ("eu-north-1", f"file {config}: region")
    assert rows["endpoint_url"] == ("http://127.0.0.1:1", "flag --endpoint-url")
    assert "warning: region eu-north-1 (from file" in result.stderr and "eu-west-1" in result.stderr


@pytest.mark.parametrize("command", ["run", "config"])
def test_aws_host_without_a_region_exits_2_naming_what_to_set(tmp_path: Path, command: str) -> None:
    """An AWS host whose region cannot be told, and none set: a config error, nothing started."""
    url = "https://sqs.amazonaws.com/123456789012/jobs"
    result = asqsd(
        command,
        "--queue-url",
        url,
        "--sqs-client",
        "botocore",
        "--log-format",
        "json",
        env=clean_env(tmp_path),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"asqsd: config error: queue_url '{url}': no AWS region can be read" in result.stderr
    assert "set --region, ASQSD_REGION or AWS_REGION" in result.stderr
    assert '"event": "sqs-client"' not in result.stderr  # the daemon never opened a client
    # The same URL with AWS_REGION set resolves: that region's endpoint.
    resolved = asqsd("config", "--queue-url", url, env=clean_env(tmp_path, AWS_REGION="us-west-2"))
    assert config_rows(resolved.stdout)["endpoint_url"][0] == "https://sqs.us-west-2.amazonaws.com"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The project's SQS emulator on 127.0.0.1, on the test's event loop."""
    async with Emulator(host="127.0.0.1", port=0, seed=7) as emu:
        yield emu


async def factory_endpoint(queue_url: str, sqs_client: str, session: object = None) -> dict[str, object]:
    """The `sqs-client` event of the daemon's own client factory for ``queue_url`` and no endpoint
    setting, in this process (test environment: no AWS_ENDPOINT_URL*); it makes no SQS call. The
    session is the daemon's unless given: botocore's chain for the lean client, aiobotocore's for
    the botocore client."""
    settings = load_settings({"queue_url": queue_url, "sqs_client": sqs_client}, env={}).settings
    if session is None:
        session = (
            aiobotocore.session.get_session()
            if sqs_client == "botocore"
            else BotocoreChain(botocore.session.get_session())
        )
    with capture_logs() as logs:
        async with contextlib.AsyncExitStack() as stack:
            await open_sqs(session, settings, stack)
    (event,) = [e for e in logs if e["event"] == "sqs-client"]
    return event


@pytest.mark.parametrize("fips", [False, True], ids=["default", "AWS_USE_FIPS_ENDPOINT"])
async def test_the_lean_client_goes_where_a_botocore_client_goes(
    fips: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For every queue URL form, the lean client (botocore's chain, no botocore client built) logs
    the endpoint and region the botocore client resolves, with the same sources."""
    if fips:
        monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    lean, full = BotocoreChain(botocore.session.get_session()), aiobotocore.session.get_session()
    keys = ("endpoint", "region", "endpoint_source", "region_source")
    for url in [form[0] for form in FORMS]:
        lean_event = await factory_endpoint(url, "lean", lean)
        full_event = await factory_endpoint(url, "botocore", full)
        assert [lean_event[k] for k in keys] == [full_event[k] for k in keys], url


@pytest.mark.slow
@pytest.mark.parametrize("sqs_client", ["lean", "botocore"])
async def test_run_with_a_loopback_queue_url_and_no_endpoint_talks_to_that_host(
    tmp_path: Path, emulator: Emulator, worker: RecordingWorker, sqs_client: str
) -> None:
    """1. The daemon's client factory resolves the emulator's address from the queue URL alone (checked
    before any daemon runs). 2. `asqsd run` with only that URL (no endpoint, no region anywhere)
    delivers a message from the emulator and deletes it. 3. Its log names the endpoint's source."""
    name = f"loop-{uuid.uuid4().hex[:8]}"
    queue_url = emulator.create_queue(name)
    assert (await factory_endpoint(queue_url, sqs_client))["endpoint"] == emulator.endpoint_url

    emulator.preload(name, 1, body="from the queue URL's own host")
    args = [
        "--queue-url", queue_url, "--sqs-client", sqs_client, "--http-url", "http://127.0.0.1",
        "--http-port", str(worker.port), "--wait-time-s", "1", "--delete-batch-wait-s", "0.01",
    ]  # fmt: skip
    daemon = DaemonProcess(tmp_path / "daemon.log", args, clean_env(tmp_path))
    try:
        await wait_until(lambda: emulator.counters(name)["deleted"] == 1, timeout_s=20, what="a delete")
        assert [d.body for d in worker.deliveries] == [b"from the queue URL's own host"]
        (event,) = [e for e in daemon.events() if e["event"] == "sqs-client"]
        assert event["endpoint"] == emulator.endpoint_url
        assert event["endpoint_source"] == "queue URL (host that is not AWS)"
        assert (event["region"], event["region_source"]) == ("us-east-1", DEFAULT_REGION_SOURCE)
        assert daemon.saw("region-defaulted")
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
    finally:
        daemon.close()
