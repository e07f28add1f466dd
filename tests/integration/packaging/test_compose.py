"""docker/compose.yaml: services, build, commands, environment and the stop grace period."""

from __future__ import annotations

from typing import Any

from asqsd.config import load_settings
from asqsd.emulator.__main__ import parse_args as parse_emulator_args
from tests.integration.packaging.support import (
    COMPOSE,
    DOCKERFILE,
    ROOT,
    SAMPLE_WORKER,
    asqsd_names,
    assert_real_settings,
    parse_duration_s,
    service_env,
    shutdown_budget_s,
)


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
