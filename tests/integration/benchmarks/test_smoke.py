"""Smoke test of the benchmark suite: ``python -m benchmarks --quick --scenarios null`` as a subprocess.

It checks that the suite runs end to end (emulator, worker and daemon in their own processes) and writes a
JSON result with the expected shape, every message delivered.  It never asserts on speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.scenarios import catalogue

ROOT = Path(__file__).resolve().parents[3]


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` in the repository root; fails the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=75,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_quick_null_scenario_writes_a_complete_result(tmp_path: Path) -> None:
    out_dir = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = run_module(
        "benchmarks",
        "--quick",
        "--scenarios",
        "null",
        "--output-dir",
        str(out_dir),
        "--log-dir",
        str(tmp_path / "logs"),
        "--no-progress",
        env=env,
    )

    result = json.loads((out_dir / "latest.json").read_text())
    assert {"meta", "scenarios", "targets"} <= set(result)
    assert result["meta"]["quick"] is True
    assert list(result["scenarios"]) == ["null"]

    expected = catalogue(quick=True)["null"].messages
    null = result["scenarios"]["null"]
    assert null["failed_runs"] == 0
    median = null["median"]
    for key in (
        "delivered",
        "msgs_per_s",
        "latency_ms",
        "daemon_cpu_us_per_msg",
        "daemon_peak_rss_mb",
        "sqs_calls",
        "sqs_calls_per_msg",
        "duplicates",
        "sqs_errors",
        "limit_msgs_per_s",
        "pct_of_limit",
        "daemon_exit",
    ):
        assert key in median, key
    assert median["delivered"] == expected
    assert median["complete"] is True
    assert median["latency_ms"]["count"] == expected
    assert median["sqs_calls"]["ReceiveMessage"] > 0
    assert median["daemon_exit"]["status"] == 0
    assert median["daemon_exit"]["summary"] is not None

    # The default placement, read back from the kernel while the run went on.
    seen = null["runs"][0]["placement_seen"]
    if len(os.sched_getaffinity(0)) >= 2:
        assert result["meta"]["placement"]["placement"] == "split"
        assert seen["worker"]["cpus"] == [max(os.sched_getaffinity(0))]
        assert max(os.sched_getaffinity(0)) not in seen["daemon"]["cpus"]
        assert seen["emulator"]["nice"] == seen["daemon"]["nice"] + 10
    assert {"daemon", "worker", "emulator"} == set(seen)

    # A --quick run is a smoke test: its figures are never judged met or missed.
    assert {row["status"] for row in result["targets"]} <= {"smoke", "n/a"}
    assert "smoke" in {row["status"] for row in result["targets"]}
    assert "| null (null worker) |" in (out_dir / "latest.md").read_text()
    assert "Placement: " in proc.stdout
    assert "| null (null worker) |" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_floor_client_reports_the_workers_steady_figures(tmp_path: Path) -> None:
    """``python -m benchmarks.floor``: worker and zero-work client in their own processes."""
    out = tmp_path / "floor.json"
    argv = ["--latency", "fixed:5ms", "--connections", "5", "--seconds", "1", "--runs", "1"]
    argv += ["--output", str(out)]
    run_module("benchmarks.floor", *argv)
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["requests"] > 20  # 5 connections kept busy for a second with 5 ms jobs
    assert run["limit_msgs_per_s"] == pytest.approx(1000)
    assert 0 < run["pct_of_limit"] <= 101
    assert 0 < run["connections_busy_pct"] <= 100
    assert run["worker_service_mean_ms"] >= 5 - 0.05
    assert set(result["median"]) == {"pct_of_limit", "connections_busy_pct", "worker_service_mean_ms"}
    split = len(os.sched_getaffinity(0)) >= 2
    assert result["placement"]["placement"] == ("split" if split else "shared")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_s3_payload_benchmark_runs_and_reports(tmp_path: Path) -> None:
    """``python -m benchmarks.s3_payloads`` with small sizes on the emulator's S3: every body whole."""
    out = tmp_path / "s3.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    argv = ["--s3", "emulator", "--big-mib", "4", "--count", "5", "--connections", "2", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.s3_payloads", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=75,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    memory, throughput = report["memory"], report["throughput"]
    assert memory["intact"] and memory["object_mib"] == 4
    assert memory["idle_rss_mib"] > 0 and memory["within_budget"]
    assert throughput["intact"] and throughput["messages"] == 5 and throughput["msgs_per_s"] > 0


def test_startup_probe_reports_each_start(tmp_path: Path) -> None:
    """``python -m benchmarks.startup``: the daemon's start-up, CPU and peak RSS, per start."""
    out = tmp_path / "startup.json"
    run_module("benchmarks.startup", "--runs", "1", "--output", str(out))
    ((template, data),) = json.loads(out.read_text()).items()
    assert "-m asqsd run" in template
    (run,) = data["runs"]
    # Process start precedes the first ReceiveMessage; the daemon spent CPU and memory getting there.
    assert run["startup_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_mb"] > 10
    assert data["summary"]["startup_s"]["median"] == run["startup_s"]
