"""The compose topology replayed on loopback: emulator, sample worker and asqsd with the
services' own commands and environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from asqsd import __version__
from tests.integration.packaging.support import (
    SAMPLE_WORKER,
    clean_env,
    log_events,
    run_check,
    service_env,
    stop,
)
from tests.support.servers import free_loopback_port, wait_http


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` interpolation (enough for this file)."""
    env = {} if env is None else env

    def replace(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or (match.group(3) or "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", replace, value)


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a subprocess with stdout and stderr in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, env={**clean_env(), **env}, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_compose_topology_on_loopback(compose: dict[str, Any], tmp_path: Path) -> None:
    """The three compose services, with their own commands and env, on 127.0.0.1 instead of a network.

    A message put into the emulator reaches the sample worker through asqsd and is deleted; the
    compose health checks pass against the live services; SIGTERM stops each one with status 0.
    """
    services = compose["services"]
    emu_port, worker_port = free_loopback_port(), free_loopback_port()
    emu_url, worker_host = f"http://127.0.0.1:{emu_port}", "http://127.0.0.1"

    sqs = services["sqs"]
    sqs_args = [{"0.0.0.0": "127.0.0.1", "9324": str(emu_port)}.get(a, a) for a in sqs["command"]]
    procs = [start([sys.executable, *sqs["entrypoint"][1:], *sqs_args], {}, tmp_path / "sqs.log")]

    worker = services["worker"]
    worker_env = {k: interpolate(v) for k, v in service_env(worker).items()}
    worker_env.update(HOST="127.0.0.1", PORT=str(worker_port))
    worker_log = tmp_path / "worker.log"
    procs.append(start([sys.executable, str(SAMPLE_WORKER)], worker_env, worker_log))

    daemon_env = {
        k: v.replace("sqs:9324", f"127.0.0.1:{emu_port}").replace("http://worker", worker_host)
        for k, v in service_env(services["asqsd"]).items()
    }
    daemon_env.update(ASQSD_HTTP_PORT=str(worker_port), ASQSD_WAIT_TIME_S="1")
    try:
        assert wait_http(f"{emu_url}/_asqsd/health", procs[0], 20), (tmp_path / "sqs.log").read_text()
        assert wait_http(f"http://127.0.0.1:{worker_port}/healthz", procs[1], 20), worker_log.read_text()
        for name, port, new in (("sqs", "9324", emu_port), ("worker", "8080", worker_port)):
            test = [a.replace(f":{port}/", f":{new}/") for a in services[name]["healthcheck"]["test"][1:]]
            assert run_check(test) == 0, f"{name} health check"

        daemon_log = tmp_path / "asqsd.log"
        daemon = start([sys.executable, "-m", "asqsd", *services["asqsd"]["command"]], daemon_env, daemon_log)
        procs.append(daemon)
        request = urllib.request.Request(
            f"{emu_url}/_asqsd/queues/default/preload",
            data=json.dumps({"count": 1, "body": '{"hello": "compose"}'}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        counters = f"{emu_url}/_asqsd/counters?queue=default"
        wait_for(lambda: get_json(counters)["deleted"] == 1 or daemon.poll() is not None, 30, "delete")
        assert daemon.poll() is None, daemon_log.read_text()
        (event,) = [e for e in log_events(worker_log) if e.get("event") == "message"]
        assert event["headers"]["X-Aws-Sqsd-Queue"] == "default"
        assert event["user_agent"] == f"aws-sqsd/{__version__}"
        stop(daemon)
        assert daemon.returncode == 0, daemon_log.read_text()
    finally:
        for proc in reversed(procs):
            stop(proc)
    assert [p.returncode for p in procs] == [0, 0, 0]
