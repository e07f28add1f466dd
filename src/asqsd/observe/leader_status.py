"""Where this instance stands in the periodic-task leader election, as the observers read it.

Kept apart from :mod:`asqsd.observe.leader_metrics` so the periodic tasks and the daemon can
report it without importing the exposition library, which only ``/metrics`` needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(slots=True, frozen=True)
class LeaderStatus:
    """This instance's place in the periodic-task leader election, read at scrape time."""

    identity: str  # this instance's leader_id in the registry table
    leading: bool
    since: float | None  # unix time leadership was gained, while leading
    leader: str | None  # the leader as last seen (this instance while it leads)


@runtime_checkable
class LeaderSource(Protocol):
    """A metrics source with periodic tasks (the daemon); None before the election exists."""

    @property
    def periodic_leader(self) -> LeaderStatus | None:
        """The election's state now."""
        ...
