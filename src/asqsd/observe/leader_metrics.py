"""The periodic-task leader as Prometheus metrics: who leads, and since when.

A daemon with periodic tasks (a ``cron.yaml``) exposes a
:class:`~asqsd.observe.leader_status.LeaderStatus` as ``periodic_leader``; :func:`leader_families`
turns it into three families:

* ``asqsd_periodic_leader``: 1 while this instance leads (enqueues the periodic tasks), else 0;
* ``asqsd_periodic_leader_since_seconds``: the unix time this instance became leader, only while
  it leads (no sample otherwise);
* ``asqsd_periodic_election_info{identity, leader}`` 1: this instance's name in the registry
  table and the leader it last saw (empty when nobody held the lease). The label is ``identity``,
  not ``instance``, which Prometheus sets on every series to the scraped target.

A daemon without periodic tasks has no election and exposes none of them.
"""

from __future__ import annotations

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric

from asqsd.observe.leader_status import LeaderStatus


def leader_families(status: LeaderStatus) -> list[Metric]:
    """The three leader families for one scrape."""
    leader = GaugeMetricFamily(
        "asqsd_periodic_leader",
        "1 while this instance is the periodic-task leader (it enqueues cron.yaml tasks), else 0.",
        value=1 if status.leading else 0,
    )
    since = GaugeMetricFamily(
        "asqsd_periodic_leader_since_seconds",
        "Unix time this instance became the periodic-task leader (only while it leads).",
    )
    if status.leading and status.since is not None:
        since.add_metric([], status.since)
    info = InfoMetricFamily(
        "asqsd_periodic_election",
        "This instance's identity in the leader election and the leader it last saw.",
        value={"identity": status.identity, "leader": status.leader or ""},
    )
    return [leader, since, info]
