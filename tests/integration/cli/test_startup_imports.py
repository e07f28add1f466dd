"""What ``asqsd run`` imports: only what the configured features need (docs/daemon.md, start-up).

The daemon runs as a subprocess against the project's emulator until its first ReceiveMessage
arrives, then stops on SIGTERM; at exit it writes the names in ``sys.modules`` to a file. A module
missing from that list was not loaded at any time, so neither before the first ReceiveMessage.
The same run with the health server on (or the botocore SQS client) must list the modules the
default run leaves out: the check would see them if the default run loaded them. No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from asqsd.emulator import Emulator
from tests.integration.cli.conftest import QUEUE
from tests.support.imds import ROLE, FakeImds
from tests.support.ledger import emulator_run_args
from tests.support.polling import wait_until
from tests.support.worker import RecordingWorker

pytestmark = pytest.mark.slow

# Runs ``python -m asqsd`` and, at interpreter exit, writes sorted(sys.modules) as JSON to argv[1].
_RUN_AND_LIST_MODULES = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "asqsd"
runpy.run_module("asqsd", run_name="__main__", alter_sys=True)
"""

# Only for optional features: the health server, CloudWatch outputs, cron.yaml, a config file,
# the alternative clients, the AWS features other than SQS (aiobotocore, and aiohttp under it), the
# emulator.
OPTIONAL_MODULES = (
    "aiohttp",
    "aiobotocore",
    "aiohttp.web",
    "prometheus_client",
    "yaml",
    "asqsd.emulator.server",
    "asqsd.emulator.store",
    "asqsd.pipeline.tracing",
    "opentelemetry",
    "asqsd.observe.health",
    "asqsd.observe.prometheus",
    "asqsd.observe.backlog",
    "asqsd.observe.cloudwatch",
    "asqsd.observe.emf",
    "asqsd.observe.interval",
    "asqsd.observe.metricdata",
    "asqsd.periodic.leader",
    "asqsd.periodic.scheduler",
    "asqsd.clients.sqs.botocore_impl",
    "asqsd.clients.worker.aiohttp_impl",
)
HEALTH_SERVER_MODULES = ("aiohttp.web", "prometheus_client", "asqsd.observe.health", "asqsd.observe.backlog")
BOTOCORE_CLIENT_MODULES = ("aiobotocore", "aiohttp", "asqsd.clients.sqs.botocore_impl")
# Only for credentials from a source other than the environment's two keys.
BOTOCORE_SESSION_MODULES = ("botocore.session", "botocore.credentials", "botocore.client")
# structlog's optional console extras: never imported by asqsd (asqsd.cli.startup).
STRUCTLOG_EXTRAS = ("rich", "better_exceptions", "colorama")
ENV_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Only when a shared config or credentials file exists (or a profile is named), a proxy is set, or
# a name is not of the usual form: botocore's configuration store, its utilities, urllib3 under them.
BOTOCORE_CONFIG_MODULES = ("botocore.configprovider", "botocore.configloader", "botocore.utils", "urllib3")
# Only when a source other than the instance profile may answer: botocore's credential chain.
BOTOCORE_CHAIN_MODULES = (
    "botocore.session",
    "botocore.credentials",
    "botocore.utils",
    "botocore.httpsession",
    "urllib3",
)


def _start(args: list[str], log: IO[bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_AND_LIST_MODULES, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )


async def modules_loaded(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker, *flags: str, aws_env: dict[str, str] = ENV_KEYS
) -> set[str]:
    """Every module ``asqsd run`` loaded in a life that saw its first ReceiveMessage sent.

    ``aws_env``: the AWS variables besides the region (by default the two keys).
    """
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASQSD_", "AWS_"))}
    env.update(aws_env, AWS_DEFAULT_REGION="us-east-1")
    argv = ["run", "--log-format", "json", *emulator_run_args(emu, QUEUE, worker.port), "--wait-time-s", "1"]
    emu.reset_counters()
    with (tmp_path / "daemon.log").open("wb") as log:
        proc = _start([str(out), *argv, *flags], log, env)
        try:
            await wait_until(
                lambda: "ReceiveMessage" in emu.counters()["first_calls"] or proc.poll() is not None,
                timeout_s=30,
                what="the daemon's first ReceiveMessage",
            )
            proc.send_signal(signal.SIGTERM)
            await wait_until(lambda: proc.poll() is not None, timeout_s=30, what="the daemon's exit")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    loaded: list[str] = json.loads(out.read_text())
    return set(loaded)


async def test_default_features_import_no_optional_module(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    loaded = await modules_loaded(tmp_path, emu, worker)
    assert {"asqsd.pipeline.receiver", "asqsd.clients.sqs.lean_impl"} <= loaded  # it did run
    assert sorted(set(OPTIONAL_MODULES) & loaded) == []
    assert sorted(set(BOTOCORE_SESSION_MODULES) & loaded) == []
    assert sorted(set(STRUCTLOG_EXTRAS) & loaded) == []


def _imports_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    listing = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{listing}"], capture_output=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.splitlines()[-1]))  # the last line: what ``code`` printed comes first


@pytest.mark.skipif(importlib.util.find_spec("rich") is None, reason="rich is not installed")
def test_structlogs_console_extras_stay_out_even_when_installed() -> None:
    # The control: structlog imported plainly takes rich (installed here: import-linter needs it).
    assert "rich" in _imports_after("import structlog")
    version = "import asqsd.cli; asqsd.cli.main(['version'])"
    loaded = _imports_after(version)
    assert "structlog" in loaded
    assert sorted(set(STRUCTLOG_EXTRAS) & loaded) == []
    # Only that one import is affected: rich stays importable for anyone who wants it.
    assert "rich.console" in _imports_after(f"{version}; import rich.console")


async def test_no_shared_config_file_needs_no_botocore_configuration(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    aws_env = {
        **ENV_KEYS,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "no"),
    }
    loaded = await modules_loaded(tmp_path, emu, worker, aws_env=aws_env)
    assert "asqsd.clients.sqs.lean_impl" in loaded  # it did run
    assert sorted(set(BOTOCORE_CONFIG_MODULES) & loaded) == []
    assert "http.client" not in loaded  # only for the instance profile's requests (or a proxy)


async def test_credentials_from_a_file_bring_botocores_session(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    aws_env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
    }
    loaded = await modules_loaded(tmp_path, emu, worker, aws_env=aws_env)
    assert sorted(set(BOTOCORE_SESSION_MODULES + BOTOCORE_CONFIG_MODULES) - loaded) == []


def _instance_role(tmp_path: Path, imds: FakeImds) -> dict[str, str]:
    """An Elastic Beanstalk instance's AWS configuration: no keys, no shared file, an instance role."""
    return {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "no"),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
    }


async def test_an_instance_role_needs_no_botocore_chain(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    async with FakeImds("answers") as imds:
        loaded = await modules_loaded(tmp_path, emu, worker, aws_env=_instance_role(tmp_path, imds))
        assert imds.count("PUT") == 1  # the credentials came from the IMDS
    assert {"asqsd.clients.sqs.instance_profile", "http.client"} <= loaded
    assert sorted(set(BOTOCORE_CHAIN_MODULES + BOTOCORE_CONFIG_MODULES) & loaded) == []


async def test_a_container_role_brings_botocores_chain(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    """A container credentials endpoint set (here the fake's credentials document, served without
    a token): botocore's chain finds it, as before; the IMDS itself is not asked."""
    path = f"/latest/meta-data/iam/security-credentials/{ROLE}"
    async with FakeImds("token-404") as imds:
        aws_env = {
            **_instance_role(tmp_path, imds),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": imds.endpoint + path[1:],
        }
        loaded = await modules_loaded(tmp_path, emu, worker, aws_env=aws_env)
        assert imds.calls == [("GET", path)]
    assert sorted(set(BOTOCORE_CHAIN_MODULES) - loaded) == []


async def test_the_health_server_brings_its_modules(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    loaded = await modules_loaded(tmp_path, emu, worker, "--health-server", "--health-port", "0")
    assert sorted(set(HEALTH_SERVER_MODULES) - loaded) == []


async def test_the_health_metric_needs_no_aiobotocore(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    # Elastic Beanstalk's default.yaml names the environment: the Health metric is on. CloudWatch
    # points at a closed loopback port (nothing may reach AWS); the first put is a minute away.
    aws_env = {**ENV_KEYS, "AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:9"}
    loaded = await modules_loaded(tmp_path, emu, worker, "--environment-name", "my-env", aws_env=aws_env)
    assert "asqsd.clients.cloudwatch" in loaded  # the metric's client was made
    assert sorted(set(BOTOCORE_CLIENT_MODULES) & loaded) == []


async def test_the_botocore_client_brings_aiobotocore(
    tmp_path: Path, emu: Emulator, worker: RecordingWorker
) -> None:
    loaded = await modules_loaded(tmp_path, emu, worker, "--sqs-client", "botocore")
    assert sorted(set(BOTOCORE_CLIENT_MODULES) - loaded) == []
