"""The leader gauges of running daemons, scraped from /metrics (moto's DynamoDB and SQS)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from asqsd.daemon import Daemon
from asqsd.periodic.cron_yaml import parse_cron_yaml
from tests.component.conftest import SettingsFactory
from tests.support.dynamo import dynamodb_client, new_registry
from tests.support.metrics import parse_families, samples_of
from tests.support.polling import wait_until

CRON = 'version: 1\ncron:\n  - name: "hourly"\n    url: "/tasks/hourly"\n    schedule: "0 * * * *"\n'


async def scrape(daemon: Daemon) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """The three leader families of one daemon's /metrics."""
    assert daemon.observers.health is not None
    async with aiohttp.ClientSession() as session, session.get(daemon.observers.health.url + "/metrics") as r:
        families = parse_families(await r.text())
    names = ("asqsd_periodic_leader", "asqsd_periodic_leader_since_seconds", "asqsd_periodic_election_info")
    return {name: samples_of(families, name) for name in names}


def leading(daemon: Daemon) -> bool:
    status = daemon.periodic_leader
    return status is not None and status.leading


@contextlib.asynccontextmanager
async def running(daemons: list[Daemon]) -> AsyncIterator[list[asyncio.Task[None]]]:
    runs = [asyncio.create_task(d.run()) for d in daemons]
    try:
        yield runs
    finally:
        for daemon in daemons:
            daemon.request_stop()
        await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 40)


async def test_metrics_say_who_leads_since_when_and_follow_a_handover(
    moto_url: str, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two daemons share a registry: the leader's /metrics say 1 with the unix time it won, the
    follower's 0 with no time and the leader's identity; when the leader stops (releasing the
    lease) the follower takes over and its metrics say so."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_url)
    async with dynamodb_client(moto_url) as client:
        registry = await new_registry(client)
    settings = make_settings(
        registry_table=registry.name, health_server=True, health_port=0, http_connections=1
    )
    tasks = parse_cron_yaml(CRON)
    daemons = [Daemon(settings, tasks=tasks) for _ in range(2)]
    started = time.time()
    async with running(daemons) as runs:
        await wait_until(lambda: any(leading(d) for d in daemons), timeout_s=10, what="a leader")
        leader, follower = sorted(daemons, key=leading, reverse=True)
        assert leader.periodic_leader is not None and follower.periodic_leader is not None
        identity = leader.periodic_leader.identity
        await wait_until(
            lambda: follower.periodic_leader is not None and follower.periodic_leader.leader == identity,
            timeout_s=10,
            what="the follower reading the leader's record",
        )
        ours, theirs = await scrape(leader), await scrape(follower)
        assert ours["asqsd_periodic_leader"][0][2] == 1
        assert started <= ours["asqsd_periodic_leader_since_seconds"][0][2] <= time.time()
        assert ours["asqsd_periodic_election_info"][0][1] == {"identity": identity, "leader": identity}
        assert theirs["asqsd_periodic_leader"][0][2] == 0
        assert theirs["asqsd_periodic_leader_since_seconds"] == []
        assert theirs["asqsd_periodic_election_info"][0][1]["leader"] == identity

        handed_over = time.time()
        leader.request_stop()
        await asyncio.wait_for(runs[daemons.index(leader)], 30)
        await wait_until(lambda: leading(follower), timeout_s=10, what="the follower taking over")
        after = await scrape(follower)
        assert after["asqsd_periodic_leader"][0][2] == 1
        assert handed_over <= after["asqsd_periodic_leader_since_seconds"][0][2] <= time.time()
