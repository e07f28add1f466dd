"""The keys of the gauge mapping the daemon reports (``DaemonView.gauges()``).

Kept apart from :mod:`asqsd.observe.prometheus` so the pipeline and the backlog poller can name
their gauges without importing the exposition library, which only the health server's
``/metrics`` needs.
"""

from __future__ import annotations

IN_FLIGHT = "in_flight"


CHANNEL_DEPTH = "channel_depth"


HELD_MESSAGES = "held_messages"


WORKER_OUTAGE = "worker_outage"


ASYNC_JOBS_HELD = "async_jobs_held"


INTAKE_PAUSED = "intake_paused"


INTAKE_PAUSED_SINCE = "intake_paused_since"


QUEUE_VISIBLE = "queue_visible"


QUEUE_IN_FLIGHT = "queue_in_flight"


QUEUE_DELAYED = "queue_delayed"


NAMED_GAUGES = frozenset(
    {
        IN_FLIGHT,
        CHANNEL_DEPTH,
        HELD_MESSAGES,
        WORKER_OUTAGE,
        ASYNC_JOBS_HELD,
        QUEUE_VISIBLE,
        QUEUE_IN_FLIGHT,
        QUEUE_DELAYED,
        INTAKE_PAUSED,
        INTAKE_PAUSED_SINCE,
    }
)
