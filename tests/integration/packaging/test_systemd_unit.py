"""deploy/systemd/asqsd.service: command, stop and restart policy, hardening,
``systemd-analyze`` verify and security (when available).
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asqsd.config import ENV_PREFIX
from tests.integration.packaging.support import (
    UNIT,
    assert_real_settings,
    parse_duration_s,
    shutdown_budget_s,
)

STOCK_CONFIG = "/etc/aws-sqsd.d/default.yaml"


def read_unit() -> configparser.ConfigParser:
    """The unit file as INI (keys keep their case; repeated keys keep the last value)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_systemd_unit_runs_asqsd_with_the_stock_file() -> None:
    """ExecStart is `/opt/asqsd/bin/asqsd run --config /etc/aws-sqsd.d/default.yaml`, Type=exec."""
    service = read_unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv == ["/opt/asqsd/bin/asqsd", "run", "--config", STOCK_CONFIG]
    assert service["Type"] == "exec"
    assert (service["User"], service["Group"]) == ("sqsd", "sqsd")


def test_systemd_unit_stop_and_restart_policy() -> None:
    """SIGTERM, enough stop time for the budget, no crash loop on config (2) or startup (3) errors."""
    service = read_unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert shutdown_budget_s() == 45  # the figure docs/deployment.md and the unit's comments use
    assert parse_duration_s(service["TimeoutStopSec"]) > shutdown_budget_s()
    assert service["Restart"] == "on-failure"
    assert {"2", "3"} <= set(service["RestartPreventExitStatus"].split())
    success = {int(s) for s in service["SuccessExitStatus"].split()}
    assert all(code > 128 for code in success), "only forced stops (128+N) count as success"


def test_systemd_unit_ordering_and_hardening() -> None:
    """After/Wants network-online.target; the hardening options and writable stock directories."""
    unit = read_unit()
    assert "network-online.target" in unit["Unit"]["After"].split()
    assert "network-online.target" in unit["Unit"]["Wants"].split()
    service = unit["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == value, key
    writable = {p.lstrip("-") for p in service["ReadWritePaths"].split()}
    assert writable == {"/var/log/aws-sqsd", "/var/run/aws-sqsd"}
    assert service["Environment"].startswith(ENV_PREFIX)
    named = re.findall(r"\b(ASQSD_[A-Z0-9_]*[A-Z0-9])=", UNIT.read_text(encoding="utf-8"))
    assert named
    assert_real_settings(dict.fromkeys(named, ""))  # the commented examples too
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def installed_asqsd() -> str:
    """An asqsd executable that exists here, to stand in for /opt/asqsd/bin/asqsd."""
    beside = Path(sys.executable).parent / "asqsd"
    found = str(beside) if beside.exists() else shutil.which("asqsd")
    if found is None:
        pytest.skip("no installed asqsd script to stand in for /opt/asqsd/bin/asqsd")
    return found


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit: no unknown keys, bad values or other warnings.

    verify checks that ExecStart exists, so the copy points at this environment's asqsd script.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on PATH")
    unit = tmp_path / "asqsd.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/asqsd/bin/asqsd", installed_asqsd()))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    about_us = [line for line in done.stderr.splitlines() if "asqsd" in line]
    assert not about_us, done.stderr
    if done.returncode != 0:
        pytest.skip(f"systemd-analyze verify cannot run here: {done.stderr.strip()[:300]}")


def test_systemd_unit_security_exposure(tmp_path: Path) -> None:
    """`systemd-analyze security --offline` rates the unit's exposure "OK" (< 4.0) where supported."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on PATH")
    unit = tmp_path / "asqsd.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/asqsd/bin/asqsd", installed_asqsd()))
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(
        r"Overall exposure level for asqsd\.service: (\d+(?:\.\d+)?)", done.stdout + done.stderr
    )
    if match is None:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {done.stderr.strip()[:300]}")
    assert float(match.group(1)) < 4.0, done.stdout
