"""CPU of one EMF report (``EmfReporter.report``): the whole per-interval cost of ``emf_file``.

Before each report, 150 deliveries fill all 15 latency buckets, so the 100-value processing-time
summary does its full work; only the report is timed (``time.process_time()``), not the
deliveries, whose recording the daemon does with or without EMF.

    .venv/bin/python -m benchmarks.micro.emf_cost              # prints µs of CPU per report
    .venv/bin/python -m benchmarks.micro.emf_cost --reports 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DEFAULT_LATENCY_BUCKETS, DeliveryStats
from asqsd.observe.emf import EmfReporter, dimensions_of
from asqsd.observe.interval import IntervalReader

GAUGES = {"in_flight": 3.0, "queue_visible": 5.0, "queue_in_flight": 1.0, "queue_delayed": 0.0}
DELIVERIES_PER_BUCKET = 10


def cpu_per_report(reports: int, directory: Path) -> float:
    """Mean CPU seconds of one report, each after a full interval's worth of deliveries."""
    counters, delivery = Counters(), DeliveryStats()
    reporter = EmfReporter(
        IntervalReader(counters, delivery, lambda: GAUGES),
        str(directory / "metrics.emf"),
        namespace="asqsd",
        dimensions=dimensions_of("my-env", "jobs"),
    )
    spent = 0.0
    for _ in range(reports):
        for seconds in DEFAULT_LATENCY_BUCKETS:
            for _ in range(DELIVERIES_PER_BUCKET):
                counters.count_status(200)
                delivery.record(status=200, elapsed_s=seconds, failed=False, receive_count=1)
        started = time.process_time()
        reporter.report()
        spent += time.process_time() - started
    reporter.close()
    return spent / reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reports", type=int, default=2000, help="reports to time (default 2000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emf-cost-") as directory:
        cost = cpu_per_report(args.reports, Path(directory))
    print(f"{cost * 1e6:.0f} µs of CPU per EMF report ({args.reports} reports)")


if __name__ == "__main__":
    main()
