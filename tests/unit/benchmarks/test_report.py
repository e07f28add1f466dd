"""The benchmark report cannot mislead: smoke runs are labelled and never judged, target lines sit
over the scenario they belong to, and the chart is drawn (looked at by a person; here: it renders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from benchmarks.report import SMOKE, SMOKE_BANNER, draw_chart, evaluate, markdown

NULL = {
    "msgs_per_s": 9000.0,
    "daemon_cpu_us_per_msg": 60.0,
    "kind": "drain",
    "sqs_calls_per_msg": {"total": 0.2},
}
META: dict[str, Any] = {
    "timestamp": "20261206T000000Z",
    "runs": 1,
    "cpus": 2,
    "python": "3.11",
    "mode": "emulator",
    "command": "python -m benchmarks",
}


def test_a_full_run_is_judged() -> None:
    statuses = {row["target"]: row["status"] for row in evaluate({"null": NULL})}
    assert statuses["null worker throughput"] == "met"
    assert statuses["null worker daemon CPU per message"] == "met"
    assert statuses["fixed 20 ms: share of 50 ÷ 0.020 = 2,500 msgs/s"] == "n/a"


def test_start_up_and_peak_rss_are_judged_on_the_null_worker() -> None:
    lean = {**NULL, "daemon_startup_s": 0.2, "daemon_peak_rss_mb": 45.0}
    heavy = {**NULL, "daemon_startup_s": 0.6, "daemon_peak_rss_mb": 75.6}
    start_up = "null worker: daemon start-up, process start → first ReceiveMessage"
    rss = "null worker: daemon peak RSS"
    met = {row["target"]: row["status"] for row in evaluate({"null": lean})}
    missed = {row["target"]: row["status"] for row in evaluate({"null": heavy})}
    assert (met[start_up], met[rss]) == ("met", "met")
    assert (missed[start_up], missed[rss]) == ("missed", "missed")
    text = markdown(
        {"meta": META, "scenarios": {"null": {"median": heavy}}, "targets": evaluate({"null": heavy})}
    )
    assert "| start-up s |" in text and "| 0.600 | 75.6 |" in text


def test_a_quick_run_is_never_met_or_missed() -> None:
    rows = evaluate({"null": NULL}, quick=True)
    measured = [row for row in rows if row["measured"] is not None]
    assert measured
    assert {row["status"] for row in measured} == {SMOKE}
    text = markdown(
        {"meta": {**META, "quick": True}, "scenarios": {"null": {"median": NULL}}, "targets": rows}
    )
    assert text.startswith(SMOKE_BANNER)
    assert "✅" not in text and "❌" not in text


def test_a_full_run_has_no_smoke_banner() -> None:
    text = markdown(
        {"meta": META, "scenarios": {"null": {"median": NULL}}, "targets": evaluate({"null": NULL})}
    )
    assert SMOKE_BANNER not in text
    assert "✅ met" in text


def test_the_chart_draws_target_lines_over_their_scenario_only(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from benchmarks import report

    fixed = {"msgs_per_s": 2400.0, "limit_msgs_per_s": 2500.0, "daemon_cpu_us_per_msg": 80.0, "kind": "drain"}
    fig, ax = plt.subplots()
    report._panel_throughput(ax, {"fixed20": fixed, "null": NULL})
    target = [line for line in ax.get_lines() if line.get_label().startswith("null target")]
    assert len(target) == 1
    xs = target[0].get_xdata()
    assert min(xs) > 0.5 and max(xs) < 1.5  # over the second bar (null), not across the panel
    plt.close(fig)
    result = {"meta": {**META, "quick": True}, "scenarios": {"null": {"median": NULL, "runs": []}}}
    assert draw_chart(result, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000
