"""The benchmark's CPU placement: the choice, and that a started process really runs where it was put."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from benchmarks.harness import ManagedProcess, Placement
from benchmarks.report import markdown


def test_split_gives_the_worker_the_last_cpu_and_the_daemon_the_rest() -> None:
    placement = Placement.choose("split", [0, 1])
    assert placement.name == "split"
    assert placement.daemon_cpus == frozenset({0})
    assert placement.worker_cpus == frozenset({1})
    assert placement.emulator_nice == 10

    wide = Placement.choose("split", [4, 2, 7, 5])
    assert wide.daemon_cpus == frozenset({2, 4, 5})
    assert wide.worker_cpus == frozenset({7})


def test_split_on_one_cpu_and_shared_leave_placement_to_the_scheduler() -> None:
    for placement in (Placement.choose("split", [3]), Placement.choose("shared", [0, 1, 2, 3])):
        assert placement == Placement()
        assert placement.daemon_cpus is None
        assert placement.worker_cpus is None
        assert placement.emulator_nice == 0


def test_an_unknown_placement_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown placement 'pinned'"):
        Placement.choose("pinned", [0, 1])


def test_describe_is_what_the_report_prints() -> None:
    split = Placement.choose("split", [0, 1]).describe()
    assert split == {"placement": "split", "daemon_cpus": [0], "worker_cpus": [1], "emulator_nice": 10}
    assert Placement().describe()["daemon_cpus"] == "any"
    meta = {"timestamp": "t", "runs": 1, "cpus": 2, "python": "3.11", "mode": "emulator", "command": "c"}
    text = markdown({"meta": {**meta, "placement": split}, "scenarios": {}, "targets": []})
    assert "Placement: split (daemon on CPUs [0], worker on [1], emulator at nice +10)" in text
    assert "Placement: shared" in markdown({"meta": meta, "scenarios": {}, "targets": []})


def test_a_started_process_runs_on_its_cpus_at_its_nice_value(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    own_nice = os.nice(0)
    if own_nice > 16:
        pytest.skip("this test process is already niced too far to add 3")
    cpus = allowed[-1:]
    code = "import json, os; print(json.dumps([sorted(os.sched_getaffinity(0)), os.nice(0)]))"
    process = ManagedProcess("probe", [sys.executable, "-c", code], tmp_path, cpus=cpus, nice=3)

    async def run_to_the_end() -> int | None:
        status = await process.wait(limit_s=30)
        await process.stop()  # closes the log files; the probe has exited already
        return status

    assert asyncio.run(run_to_the_end()) == 0, process.tail()
    seen_cpus, seen_nice = json.loads(process.stdout_path.read_text())
    assert seen_cpus == cpus
    assert seen_nice == own_nice + 3
