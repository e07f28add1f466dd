"""Shared by the packaging tests: the files under test and the shutdown budget; YAML,
environment, Dockerfile and Kubernetes-manifest helpers; running health-check commands and
stopping subprocesses.

Docker cannot build or run here and there is no cluster, so these tests check what can be checked
without them: every file parses; every ``ASQSD_*`` variable is a real setting and the values load;
the timing budgets add up; the Dockerfile's shape and its install steps (run for real into a fresh
venv); the health-check one-liners (run for real against loopback servers); the systemd unit
(``systemd-analyze verify`` when available); and the compose topology itself, replayed on
127.0.0.1 with the same commands and environment (emulator, sample worker, daemon).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from asqsd.config import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker" / "compose.yaml"
SAMPLE_WORKER = ROOT / "docker" / "sample_worker" / "app.py"
K8S = ROOT / "deploy" / "kubernetes" / "sidecar.yaml"
UNIT = ROOT / "deploy" / "systemd" / "asqsd.service"
HEALTH_PORT = 9325


# Mirrors the daemon's bounds (src/asqsd/daemon.py): slack on the long poll, heartbeat stop bound.
POLL_SLACK_S = 10.0
HEARTBEAT_STOP_S = 5.0


def _default(name: str) -> float:
    """A numeric setting's default value."""
    default = Settings.model_fields[name].default
    assert isinstance(default, int | float)
    return float(default)


def shutdown_budget_s(settings: Settings | None = None) -> float:
    """Worst-case seconds asqsd needs after SIGTERM (docs/deployment.md, "Shutdown timing budget").

    In-flight POSTs get grace + cancel deadline while an outstanding long poll finishes (bounded by
    wait_time_s + slack) in parallel; then the heartbeat stops and the final flush runs.
    """
    if settings is None:
        grace, cancel = _default("shutdown_grace_s"), _default("cancel_deadline_s")
        wait, flush = _default("wait_time_s"), _default("flush_timeout_s")
    else:
        grace, cancel = settings.shutdown_grace_s, settings.cancel_deadline_s
        wait, flush = settings.wait_time_s, settings.flush_timeout_s
    return max(grace + cancel, wait + POLL_SLACK_S) + HEARTBEAT_STOP_S + flush


def load_docs(path: Path) -> list[Any]:
    """All YAML documents of a file, empty ones dropped."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def clean_env() -> dict[str, str]:
    """The current environment without any asqsd or AWS settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "AWS_"))}


def asqsd_names(env: Mapping[str, Any]) -> list[str]:
    """The ``ASQSD_*`` names of an environment mapping."""
    return [name for name in env if name.startswith(ENV_PREFIX)]


def assert_real_settings(env: Mapping[str, Any]) -> None:
    """Every ``ASQSD_<KEY>`` names a field of Settings."""
    unknown = [n for n in asqsd_names(env) if n[len(ENV_PREFIX) :].lower() not in Settings.model_fields]
    assert not unknown, f"not asqsd settings: {unknown}"


def parse_duration_s(value: str | int | float) -> float:
    """Compose / systemd durations: ``60``, ``60s``, ``1m30s``, ``1min 30s``, ``2m``."""
    if isinstance(value, int | float):
        return float(value)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip().lower())
    assert parts, f"not a duration: {value!r}"
    return sum(float(number) * units[unit or "s"] for number, unit in parts)


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (map or ``KEY=VALUE`` list form), values as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def pod_spec(k8s: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod template spec."""
    return k8s["Deployment"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(k8s: Mapping[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """One container of the Deployment by name."""
    (found,) = [c for c in pod_spec(k8s)["containers"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


def configmap_settings(k8s: Mapping[str, dict[str, Any]]) -> Settings:
    """asqsd's settings as the ConfigMap (plus the container's env) makes them."""
    env = {**k8s["ConfigMap"]["data"], **{e["name"]: e["value"] for e in container(k8s, "asqsd")["env"]}}
    return load_settings(env=env).settings


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "dangling line continuation"
    return instructions


def instruction_args(keyword: str) -> list[str]:
    """Arguments of every instruction with this keyword, in order."""
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    (spec,) = instruction_args("HEALTHCHECK")
    _options, _, command = spec.partition(" CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list)
    return argv


def run_check(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run a health-check command with this interpreter standing in for the image's ``python``."""
    assert argv[0] == "python"
    done = subprocess.run(
        [sys.executable, *argv[1:]], env={**clean_env(), **(env or {})}, capture_output=True, timeout=20
    )
    return done.returncode


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM and wait; SIGKILL only if it hangs (the test then fails on the exit status)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines a process wrote to its log file."""
    events = []
    for line in log.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events
