"""``asqsd cron trigger`` as a subprocess, against a running daemon and the ledger worker."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from asqsd.daemon import Daemon
from asqsd.periodic.cron_yaml import load_cron_file
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.dynamo import dynamodb_client, new_registry
from tests.support.metrics import value_of
from tests.support.polling import wait_until

CRON = """version: 1
cron:
  - name: "report"
    url: "/tasks/report?kind=daily"
    schedule: "0 3 * * *"
"""


def leading(daemon: Daemon) -> bool:
    status = daemon.periodic_leader
    return status is not None and status.leading


async def leader_gauge(daemon: Daemon) -> float:
    """asqsd_periodic_leader as the daemon's /metrics say."""
    assert daemon.observers.health is not None
    async with aiohttp.ClientSession() as session, session.get(daemon.observers.health.url + "/metrics") as r:
        return value_of(await r.text(), "asqsd_periodic_leader")


async def asqsd(*args: str) -> tuple[int, str, str]:
    """Run ``python -m asqsd`` without blocking the loop the emulator and the daemon run on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASQSD_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asqsd",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_trigger_enqueues_a_run_the_leading_daemon_delivers_with_the_task_headers(
    rig: Rig, record: Record, tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon with the task (registry table on moto) leads, as its /metrics say, while it
    works through 30 ledger messages; `asqsd cron trigger report` enqueues one run on its queue:
    the worker gets it on the task's path with X-Aws-Sqsd-Taskname, -Path and -Scheduled-At (the
    time the command printed), and every ledger message is still delivered and deleted once."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_url)
    async with dynamodb_client(moto_url) as client:
        registry = await new_registry(client)
    cron = tmp_path / "cron.yaml"
    cron.write_text(CRON)
    rig.load(30)
    settings = rig.settings(registry_table=registry.name, health_server=True, health_port=0)
    queue = ["--queue-url", rig.queue_url, "--endpoint-url", rig.emu.endpoint_url, "--cron-file", str(cron)]
    async with daemon_running(Daemon(settings, tasks=load_cron_file(cron))) as daemon:
        await wait_until(lambda: leading(daemon), timeout_s=10, what="the daemon leading")
        assert await leader_gauge(daemon) == 1
        status, out, err = await asqsd("cron", "trigger", "report", *queue)
        assert status == 0, err
        match = re.fullmatch(
            r"enqueued report \(/tasks/report\?kind=daily\) scheduled at (\S+) as message (\S+)\n", out
        )
        assert match is not None, out
        await wait_until(
            lambda: any(r.path == "/tasks/report?kind=daily" for r in rig.worker.records),
            timeout_s=10,
            what="the task's delivery",
        )
        await rig.wait_done()
    [task] = [r for r in rig.worker.records if r.path.startswith("/tasks/")]
    headers = {name.decode().lower(): value.decode() for name, value in task.raw_headers}
    assert headers["x-aws-sqsd-taskname"] == "report"
    assert headers["x-aws-sqsd-path"] == "/tasks/report?kind=daily"
    assert headers["x-aws-sqsd-scheduled-at"] == match.group(1)
    assert headers["x-aws-sqsd-msgid"] == match.group(2)
    report = rig.report()
    record(report=report)
    report.assert_all_done()
    assert report.duplicated == 0


async def test_trigger_of_an_unknown_task_names_the_known_ones(rig: Rig, tmp_path: Path) -> None:
    """An unknown name exits 2 with the known names, and enqueues nothing."""
    cron = tmp_path / "cron.yaml"
    cron.write_text(CRON)
    args = ["--queue-url", rig.queue_url, "--endpoint-url", rig.emu.endpoint_url, "--cron-file", str(cron)]
    status, out, err = await asqsd("cron", "trigger", "reprot", *args)
    assert (status, out) == (2, "")
    assert f"unknown task 'reprot' ({cron}); known tasks: 'report'" in err
    assert rig.depth() == 0
