"""Packaging and operations files: Dockerfile, compose, Kubernetes + KEDA, systemd, sample worker.

Docker cannot build or run here and there is no cluster, so these tests check what can be checked
without them: every file parses; every ``ASQSD_*`` variable is a real setting and the values load;
the timing budgets add up; the Dockerfile's shape and its install steps (run for real into a fresh
venv); the health-check one-liners (run for real against loopback servers); the systemd unit
(``systemd-analyze verify`` when available); and the compose topology itself, replayed on
127.0.0.1 with the same commands and environment (emulator, sample worker, daemon).
"""

from __future__ import annotations

import configparser
import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from asqsd import __version__
from asqsd.config import ENV_PREFIX, Settings, load_settings
from asqsd.emulator.__main__ import parse_args as parse_emulator_args
from tests.support.servers import free_loopback_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker" / "compose.yaml"
SAMPLE_WORKER = ROOT / "docker" / "sample_worker" / "app.py"
K8S = ROOT / "deploy" / "kubernetes" / "sidecar.yaml"
UNIT = ROOT / "deploy" / "systemd" / "asqsd.service"
STOCK_CONFIG = "/etc/aws-sqsd.d/default.yaml"
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


def yaml_files() -> list[Path]:
    """Every YAML file of the packaging: compose and deploy manifests."""
    found = [*ROOT.joinpath("docker").rglob("*.y*ml"), *ROOT.joinpath("deploy").rglob("*.y*ml")]
    return sorted(p for p in found if p.suffix in (".yaml", ".yml"))


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


# --- every YAML file ------------------------------------------------------------------------------


def test_there_are_yaml_files() -> None:
    """The compose file and the Kubernetes manifest are found by the glob below."""
    assert COMPOSE in yaml_files()
    assert K8S in yaml_files()


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    """Each YAML file parses (all documents) and each document is a mapping."""
    docs = load_docs(path)
    assert docs
    assert all(isinstance(doc, dict) for doc in docs)


# --- compose ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yaml, with YAML merge keys resolved."""
    (doc,) = load_docs(COMPOSE)
    return doc  # type: ignore[no-any-return]


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (map or ``KEY=VALUE`` list form), values as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` interpolation (enough for this file)."""
    env = {} if env is None else env

    def replace(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or (match.group(3) or "")

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", replace, value)


def test_compose_services_and_dependencies(compose: dict[str, Any]) -> None:
    """sqs, worker and asqsd; asqsd waits for both to be healthy; both have health checks."""
    services = compose["services"]
    assert set(services) >= {"sqs", "worker", "asqsd"}
    depends = services["asqsd"]["depends_on"]
    assert depends["sqs"]["condition"] == "service_healthy"
    assert depends["worker"]["condition"] == "service_healthy"
    for name in ("sqs", "worker"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", "exec-form health check (no shell in between)"


def test_compose_builds_the_dockerfile(compose: dict[str, Any]) -> None:
    """Every service runs the image built from docker/Dockerfile with the repository as context."""
    for name, service in compose["services"].items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name


def test_compose_emulator_command_is_valid(compose: dict[str, Any]) -> None:
    """The sqs service runs the emulator with arguments its own parser accepts."""
    sqs = compose["services"]["sqs"]
    assert sqs["entrypoint"] == ["python", "-m", "asqsd.emulator"]
    args = parse_emulator_args(sqs["command"])
    assert args.host == "0.0.0.0"  # inside the compose network only
    assert args.port == 9324
    assert args.queue == ["default"]


def test_compose_worker_mounts_the_sample_worker(compose: dict[str, Any]) -> None:
    """The worker's entrypoint script is the bind-mounted docker/sample_worker/app.py."""
    worker = compose["services"]["worker"]
    source, target, *_ = worker["volumes"][0].split(":")
    assert (COMPOSE.parent / source).resolve() == SAMPLE_WORKER.parent
    assert worker["entrypoint"] == ["python", f"{target}/app.py"]
    assert service_env(worker)["HOST"] == "0.0.0.0"


def test_compose_env_names_are_settings(compose: dict[str, Any]) -> None:
    """Every ASQSD_* variable of every service is a real asqsd setting."""
    for service in compose["services"].values():
        assert_real_settings(service_env(service))
    assert asqsd_names(service_env(compose["services"]["asqsd"]))


def test_compose_asqsd_env_loads(compose: dict[str, Any]) -> None:
    """The daemon's environment validates and points at the sqs and worker services."""
    env = service_env(compose["services"]["asqsd"])
    settings = load_settings(env=env).settings
    assert settings.queue_url == "http://sqs:9324/000000000000/default"
    assert settings.endpoint_url == "http://sqs:9324"
    assert settings.worker_url == "http://worker:8080"
    worker_port = service_env(compose["services"]["worker"])["PORT"]
    assert settings.http_port == int(worker_port)


def test_compose_stop_grace_covers_the_shutdown_budget(compose: dict[str, Any]) -> None:
    """stop_grace_period > the worst-case shutdown (>= grace + cancel deadline + flush)."""
    service = compose["services"]["asqsd"]
    settings = load_settings(env=service_env(service)).settings
    budget = shutdown_budget_s(settings)
    assert budget >= settings.shutdown_grace_s + settings.cancel_deadline_s + settings.flush_timeout_s
    assert parse_duration_s(service["stop_grace_period"]) > budget


# --- Kubernetes + KEDA --------------------------------------------------------------------------

KNOWN_KINDS = {
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
CONTAINER_FIELDS = {
    "name", "image", "command", "args", "env", "envFrom", "ports", "lifecycle", "livenessProbe",
    "readinessProbe", "startupProbe", "securityContext", "resources", "volumeMounts", "workingDir",
    "imagePullPolicy", "restartPolicy",
}  # fmt: skip
PROBE_FIELDS = {
    "exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
    "failureThreshold", "successThreshold", "terminationGracePeriodSeconds",
}  # fmt: skip
SCALED_OBJECT_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip
TRIGGER_FIELDS = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
SQS_SCALER_METADATA = {
    "queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion", "awsEndpoint",
    "identityOwner", "scaleOnInFlight", "scaleOnDelayed", "awsRoleArn",
}  # fmt: skip
POD_IDENTITY_FIELDS = {"provider", "identityOwner", "roleArn", "identityId"}


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    """The manifest's objects by kind (one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for doc in load_docs(K8S):
        assert doc["kind"] not in objects, f"two {doc['kind']} objects"
        objects[doc["kind"]] = doc
    return objects


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


def test_k8s_kinds_and_api_versions(k8s: dict[str, dict[str, Any]]) -> None:
    """Only real kinds with their real apiVersions; every object is named."""
    found = {(obj["apiVersion"], kind) for kind, obj in k8s.items()}
    assert found == KNOWN_KINDS
    assert all(obj["metadata"]["name"] for obj in k8s.values())


def test_k8s_env_names_are_settings_and_load(k8s: dict[str, dict[str, Any]]) -> None:
    """ConfigMap keys and container env: real ASQSD_* settings whose values validate."""
    data = k8s["ConfigMap"]["data"]
    assert asqsd_names(data)
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    assert_real_settings(data)
    assert_real_settings({e["name"]: e.get("value") for e in container(k8s, "asqsd")["env"]})
    settings = configmap_settings(k8s)
    assert settings.worker_url == "http://127.0.0.1:8080"
    (ref,) = container(k8s, "asqsd")["envFrom"]
    assert ref["configMapRef"]["name"] == k8s["ConfigMap"]["metadata"]["name"]


def test_k8s_container_fields_are_real(k8s: dict[str, dict[str, Any]]) -> None:
    """Container and probe fields are core/v1 field names (catches typos no parser would)."""
    for spec in pod_spec(k8s)["containers"]:
        assert set(spec) <= CONTAINER_FIELDS, spec["name"]
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert set(spec.get(probe, {})) <= PROBE_FIELDS, (spec["name"], probe)


def test_k8s_asqsd_is_hardened_and_probed(k8s: dict[str, dict[str, Any]]) -> None:
    """Non-root, read-only root, no privilege escalation; probes hit /healthz and /readyz."""
    sidecar = container(k8s, "asqsd")
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod_spec(k8s)["securityContext"]["runAsNonRoot"] is True
    assert f"127.0.0.1:{HEALTH_PORT}/healthz" in " ".join(sidecar["livenessProbe"]["exec"]["command"])
    assert f"127.0.0.1:{HEALTH_PORT}/readyz" in " ".join(sidecar["readinessProbe"]["exec"]["command"])


def test_k8s_grace_period_covers_the_shutdown(k8s: dict[str, dict[str, Any]]) -> None:
    """terminationGracePeriodSeconds > asqsd's budget; the app outlives asqsd's grace period."""
    settings = configmap_settings(k8s)
    grace = pod_spec(k8s)["terminationGracePeriodSeconds"]
    assert grace > shutdown_budget_s(settings)
    app_sleep = container(k8s, "app")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert settings.shutdown_grace_s + settings.cancel_deadline_s <= app_sleep < grace


def test_k8s_keda_scales_the_deployment_on_the_same_queue(k8s: dict[str, dict[str, Any]]) -> None:
    """ScaledObject targets the Deployment, aws-sqs-queue on asqsd's queue, auth by reference."""
    spec = k8s["ScaledObject"]["spec"]
    assert set(spec) <= SCALED_OBJECT_FIELDS
    target = spec["scaleTargetRef"]
    deployment = k8s["Deployment"]
    assert (target["apiVersion"], target["kind"]) == (deployment["apiVersion"], "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert set(trigger) <= TRIGGER_FIELDS
    assert trigger["type"] == "aws-sqs-queue"
    meta = trigger["metadata"]
    assert set(meta) <= SQS_SCALER_METADATA
    assert all(isinstance(v, str) for v in meta.values()), "trigger metadata values are strings"
    settings = configmap_settings(k8s)
    assert meta["queueURL"] == settings.queue_url
    assert f"sqs.{meta['awsRegion']}.amazonaws.com" in meta["queueURL"]
    assert int(meta["queueLength"]) >= 1
    assert meta["identityOwner"] in ("pod", "operator")
    assert trigger["authenticationRef"]["name"] == k8s["TriggerAuthentication"]["metadata"]["name"]


def test_k8s_trigger_authentication(k8s: dict[str, dict[str, Any]]) -> None:
    """TriggerAuthentication uses the aws pod identity provider with real field names."""
    identity = k8s["TriggerAuthentication"]["spec"]["podIdentity"]
    assert set(identity) <= POD_IDENTITY_FIELDS
    assert identity["provider"] == "aws"
    assert not ("roleArn" in identity and "identityOwner" in identity), "mutually exclusive"


# --- Dockerfile ---------------------------------------------------------------------------------


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


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    """A build stage and a runtime stage, both from python:3.11-slim; the venv is copied over."""
    args = dict(a.split("=", 1) for a in instruction_args("ARG") if "=" in a)
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0]) for f in instruction_args("FROM")
    ]
    assert len(bases) >= 2
    assert set(bases) == {"python:3.11-slim"}
    assert any(c.startswith("--from=build") and "/opt/asqsd" in c for c in instruction_args("COPY"))


def test_dockerfile_exec_form_entrypoint_and_stop_signal() -> None:
    """ENTRYPOINT ["asqsd"], CMD ["run"] (exec form: asqsd is PID 1), STOPSIGNAL SIGTERM."""
    assert [json.loads(a) for a in instruction_args("ENTRYPOINT")] == [["asqsd"]]
    assert [json.loads(a) for a in instruction_args("CMD")] == [["run"]]
    assert instruction_args("STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_runs_as_non_root() -> None:
    """The last USER is the numeric non-root uid 10001, created in the runtime stage."""
    user = instruction_args("USER")[-1]
    assert user.split(":")[0] == "10001"
    assert any("useradd" in run and "--uid 10001" in run for run in instruction_args("RUN"))


def test_dockerfile_healthcheck_targets_healthz() -> None:
    """HEALTHCHECK in exec form with Python's urllib against 127.0.0.1:9325/healthz.

    Once the health endpoint's ``health_port`` setting exists, its default must be that port.
    """
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert "127.0.0.1" in argv[2]
    assert "/healthz" in argv[2]
    assert str(HEALTH_PORT) in argv[2]
    assert "ASQSD_HEALTH_PORT" in argv[2]
    if "health_port" in Settings.model_fields:
        assert Settings.model_fields["health_port"].default == HEALTH_PORT


def test_dockerfile_install_steps_match_the_tested_ones() -> None:
    """The build stage builds a wheel and pip-installs it into /opt/asqsd (what the slow test runs)."""
    run = " ".join(instruction_args("RUN"))
    assert "pip wheel --no-deps" in run
    assert "-m venv --without-pip /opt/asqsd" in run
    assert "--python /opt/asqsd/bin/python install /dist/*.whl" in run


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (last match wins)."""
    excluded = False
    candidates = [relative]
    parts = relative.split("/")
    candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_only_what_the_build_copies() -> None:
    """Every COPY source is in the context; tests, venvs, caches and .git are not."""
    for copy in instruction_args("COPY"):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert not dockerignore_excludes(source.rstrip("/")), source
    assert not dockerignore_excludes("src/asqsd/emulator/server.py")
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "src/asqsd/__pycache__/x.pyc"):
        assert dockerignore_excludes(path), path


# --- health-check one-liners, run for real --------------------------------------------------------


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET with the server's ``status`` and records the paths asked for."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@contextlib.contextmanager
def status_server(status: int) -> Iterator[http.server.ThreadingHTTPServer]:
    """A loopback HTTP server answering every GET with ``status``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    server.status = status  # type: ignore[attr-defined]
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_check(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run a health-check command with this interpreter standing in for the image's ``python``."""
    assert argv[0] == "python"
    done = subprocess.run(
        [sys.executable, *argv[1:]], env={**clean_env(), **(env or {})}, capture_output=True, timeout=20
    )
    return done.returncode


def test_dockerfile_healthcheck_passes_and_fails() -> None:
    """The HEALTHCHECK one-liner exits 0 on a 200, non-zero on a 503 and on a refused connection."""
    argv = healthcheck_argv()
    with status_server(200) as server:
        assert run_check(argv, {"ASQSD_HEALTH_PORT": str(server.server_port)}) == 0
        assert server.paths == ["/healthz"]  # type: ignore[attr-defined]
    with status_server(503) as server:
        assert run_check(argv, {"ASQSD_HEALTH_PORT": str(server.server_port)}) != 0
    assert run_check(argv, {"ASQSD_HEALTH_PORT": str(free_loopback_port())}) != 0


def test_k8s_probe_commands_pass_and_fail(k8s: dict[str, dict[str, Any]]) -> None:
    """The exec probes' one-liners exit 0 on a 200 and non-zero on a 503 (port rewritten)."""
    sidecar = container(k8s, "asqsd")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        argv = sidecar[probe]["exec"]["command"]
        for status, ok in ((200, True), (503, False)):
            with status_server(status) as server:
                moved = [a.replace(f":{HEALTH_PORT}/", f":{server.server_port}/") for a in argv]
                assert (run_check(moved) == 0) is ok, (probe, status)
                assert server.paths == [path]  # type: ignore[attr-defined]


# --- the install steps, for real ------------------------------------------------------------------


def pip(*args: str, timeout: float = 120) -> None:
    """Run this interpreter's pip; fail with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    """The Dockerfile's build steps: wheel → venv without pip → install → `asqsd version` works.

    Also checks what the compose services need from that venv: the emulator module and aiohttp.
    """
    dist = tmp_path / "dist"
    pip("wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT))
    (wheel,) = dist.glob("asqsd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "asqsd/emulator/__main__.py" in names
    assert "asqsd/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip("--python", str(python), "install", str(wheel))

    version = subprocess.run(
        [str(venv / "bin" / "asqsd"), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"asqsd {__version__}"
    check = "import aiohttp, asqsd.emulator.__main__, yaml"
    assert subprocess.run([str(python), "-c", check], timeout=30, check=False).returncode == 0


# --- systemd --------------------------------------------------------------------------------------


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


# --- sample worker --------------------------------------------------------------------------------


@contextlib.contextmanager
def sample_worker(tmp_path: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """Run docker/sample_worker/app.py on a free loopback port; yields (base URL, stdout log)."""
    port = free_loopback_port()
    log = tmp_path / f"worker-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SAMPLE_WORKER)],
            env={**clean_env(), "HOST": "127.0.0.1", "PORT": str(port), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(f"{base}/healthz", proc, 20), log.read_text()
        yield base, log
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM and wait; SIGKILL only if it hangs (the test then fails on the exit status)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
    """POST and return (status, headers), HTTP errors included."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines a process wrote to its log file."""
    events = []
    for line in log.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def test_sample_worker_answers_200_and_logs_headers(tmp_path: Path) -> None:
    """A POST gets 200; the log line carries the X-Aws-Sqsd-* headers and the body size."""
    with sample_worker(tmp_path) as (base, log):
        status, _ = post(
            f"{base}/jobs", b'{"n": 1}', {"X-Aws-Sqsd-Msgid": "m-1", "Content-Type": "application/json"}
        )
        assert status == 200
    (event,) = [e for e in log_events(log) if e.get("event") == "message"]
    assert event["headers"] == {"X-Aws-Sqsd-Msgid": "m-1"}
    assert event["path"] == "/jobs"
    assert event["body_bytes"] == 8


def test_sample_worker_status_and_retry_after_from_env(tmp_path: Path) -> None:
    """WORKER_STATUS and WORKER_RETRY_AFTER shape the answer (503 + Retry-After, as asqsd honours)."""
    with sample_worker(tmp_path, WORKER_STATUS="503", WORKER_RETRY_AFTER="7") as (base, _log):
        status, headers = post(f"{base}/", b"x", {})
    assert status == 503
    assert headers["Retry-After"] == "7"


# --- the compose topology, replayed on loopback ----------------------------------------------------


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it is true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a subprocess with stdout and stderr in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, env={**clean_env(), **env}, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_compose_topology_on_loopback(compose: dict[str, Any], tmp_path: Path) -> None:
    """The three compose services, with their own commands and env, on 127.0.0.1 instead of a network.

    A message put into the emulator reaches the sample worker through asqsd and is deleted; the
    compose health checks pass against the live services; SIGTERM stops each one with status 0.
    """
    services = compose["services"]
    emu_port, worker_port = free_loopback_port(), free_loopback_port()
    emu_url, worker_host = f"http://127.0.0.1:{emu_port}", "http://127.0.0.1"

    sqs = services["sqs"]
    sqs_args = [{"0.0.0.0": "127.0.0.1", "9324": str(emu_port)}.get(a, a) for a in sqs["command"]]
    procs = [start([sys.executable, *sqs["entrypoint"][1:], *sqs_args], {}, tmp_path / "sqs.log")]

    worker = services["worker"]
    worker_env = {k: interpolate(v) for k, v in service_env(worker).items()}
    worker_env.update(HOST="127.0.0.1", PORT=str(worker_port))
    worker_log = tmp_path / "worker.log"
    procs.append(start([sys.executable, str(SAMPLE_WORKER)], worker_env, worker_log))

    daemon_env = {
        k: v.replace("sqs:9324", f"127.0.0.1:{emu_port}").replace("http://worker", worker_host)
        for k, v in service_env(services["asqsd"]).items()
    }
    daemon_env.update(ASQSD_HTTP_PORT=str(worker_port), ASQSD_WAIT_TIME_S="1")
    try:
        assert wait_http(f"{emu_url}/_asqsd/health", procs[0], 20), (tmp_path / "sqs.log").read_text()
        assert wait_http(f"http://127.0.0.1:{worker_port}/healthz", procs[1], 20), worker_log.read_text()
        for name, port, new in (("sqs", "9324", emu_port), ("worker", "8080", worker_port)):
            test = [a.replace(f":{port}/", f":{new}/") for a in services[name]["healthcheck"]["test"][1:]]
            assert run_check(test) == 0, f"{name} health check"

        daemon_log = tmp_path / "asqsd.log"
        daemon = start([sys.executable, "-m", "asqsd", *services["asqsd"]["command"]], daemon_env, daemon_log)
        procs.append(daemon)
        request = urllib.request.Request(
            f"{emu_url}/_asqsd/queues/default/preload",
            data=json.dumps({"count": 1, "body": '{"hello": "compose"}'}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
        counters = f"{emu_url}/_asqsd/counters?queue=default"
        wait_for(lambda: get_json(counters)["deleted"] == 1 or daemon.poll() is not None, 30, "delete")
        assert daemon.poll() is None, daemon_log.read_text()
        (event,) = [e for e in log_events(worker_log) if e.get("event") == "message"]
        assert event["headers"]["X-Aws-Sqsd-Queue"] == "default"
        assert event["user_agent"] == f"aws-sqsd/{__version__}"
        stop(daemon)
        assert daemon.returncode == 0, daemon_log.read_text()
    finally:
        for proc in reversed(procs):
            stop(proc)
    assert [p.returncode for p in procs] == [0, 0, 0]


# --- the operations docs --------------------------------------------------------------------------

DOCS = [ROOT / "docs" / "deployment.md", ROOT / "docs" / "migrating.md"]
# Named in the docs and read by the Dockerfile's health check before the health endpoint's own
# setting exists; checked like any other name as soon as ``health_port`` is a Settings field.
PENDING_ENV = {"ASQSD_HEALTH_PORT": "health_port"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_relative_links_resolve(doc: Path) -> None:
    """Every relative Markdown link of the operations docs points at an existing file."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t]
    assert local
    missing = [t for t in local if not (doc.parent / t).exists()]
    assert not missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_env_names_are_settings(doc: Path) -> None:
    """Every ``ASQSD_<KEY>`` the docs name is a real setting."""
    names = set(re.findall(r"\bASQSD_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text(encoding="utf-8")))
    pending = {n for n, field in PENDING_ENV.items() if field not in Settings.model_fields}
    assert_real_settings(dict.fromkeys(names - pending, ""))


def test_migrating_table_flags_are_run_flags() -> None:
    """Every ``--flag`` in the migration tables is an option of ``asqsd run``."""
    text = (ROOT / "docs" / "migrating.md").read_text(encoding="utf-8")
    rows = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rows))
    assert flags
    done = subprocess.run(
        [sys.executable, "-m", "asqsd", "run", "--help"], capture_output=True, text=True, timeout=60
    )
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))
    assert flags <= known, sorted(flags - known)
