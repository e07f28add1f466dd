"""The periodic-task leader metrics in /metrics, in both exposition formats."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats
from asqsd.observe.leader_status import LeaderStatus
from asqsd.observe.prometheus import metrics_registry, render_metrics
from tests.support.metrics import parse_families, samples_of
from tests.unit.observe.test_prometheus import Snapshot

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@dataclass
class WithLeader(Snapshot):
    """A metrics source of a daemon with periodic tasks."""

    leader: LeaderStatus | None = None

    @property
    def periodic_leader(self) -> LeaderStatus | None:
        return self.leader


def scrape(source: Snapshot, accept: str | None = None) -> str:
    body, _ = render_metrics(metrics_registry(source), accept)
    return body.decode()


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_the_leader_says_so_and_since_when(accept: str | None) -> None:
    """Leading: the gauge is 1, the since gauge holds the unix time, the info names both."""
    status = LeaderStatus("web-1.42.ab", leading=True, since=1_790_000_000.5, leader="web-1.42.ab")
    text = scrape(WithLeader(Counters(), DeliveryStats(), {}, status), accept)
    families = parse_families(text, openmetrics=accept is not None)
    assert samples_of(families, "asqsd_periodic_leader") == [("asqsd_periodic_leader", {}, 1)]
    assert samples_of(families, "asqsd_periodic_leader_since_seconds") == [
        ("asqsd_periodic_leader_since_seconds", {}, 1_790_000_000.5)
    ]
    labels = {"identity": "web-1.42.ab", "leader": "web-1.42.ab"}
    assert samples_of(families, "asqsd_periodic_election_info") == [
        ("asqsd_periodic_election_info", labels, 1)
    ]


def test_a_follower_names_the_leader_it_saw_and_has_no_since() -> None:
    """Following: the gauge is 0, the since family has no sample, the info names the leader."""
    status = LeaderStatus("web-2.7.cd", leading=False, since=None, leader="web-1.42.ab")
    families = parse_families(scrape(WithLeader(Counters(), DeliveryStats(), {}, status)))
    assert samples_of(families, "asqsd_periodic_leader") == [("asqsd_periodic_leader", {}, 0)]
    assert samples_of(families, "asqsd_periodic_leader_since_seconds") == []
    assert samples_of(families, "asqsd_periodic_election_info")[0][1] == {
        "identity": "web-2.7.cd",
        "leader": "web-1.42.ab",
    }


def test_no_periodic_tasks_no_leader_families() -> None:
    """A source without an election (no cron.yaml, or not opened yet) exposes none of them."""
    for source in (Snapshot(Counters(), DeliveryStats(), {}), WithLeader(Counters(), DeliveryStats(), {})):
        assert "asqsd_periodic" not in scrape(source)
