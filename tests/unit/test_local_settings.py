"""`asqsd local` settings: never CloudWatch or DynamoDB, whatever the user's configuration says; flags
it cannot honour are refused; the shell's AWS identity is never used."""

from __future__ import annotations

import os

from structlog.testing import capture_logs

from asqsd.cli.local import (
    LOCAL_WAIT_TIME_S,
    REFUSED_FLAGS,
    isolate_from_aws,
    local_settings,
    refused_flags,
    send_commands,
)

QUEUE = "http://127.0.0.1:9/000000000000/q"


def test_cloudwatch_metrics_are_forced_off_with_a_log_line() -> None:
    with capture_logs() as logs:
        settings = local_settings({"cloudwatch_metrics": True}, QUEUE, "http://127.0.0.1:9", None)
    assert settings.cloudwatch_metrics is False
    assert [entry["event"] for entry in logs] == ["cloudwatch-metrics-disabled"]


def test_no_log_line_when_the_user_did_not_ask() -> None:
    with capture_logs() as logs:
        settings = local_settings({}, QUEUE, "http://127.0.0.1:9", None)
    assert settings.cloudwatch_metrics is False
    assert logs == []


def test_the_demo_turns_on_async_ack_for_its_slow_sample() -> None:
    """The demo's 'slow' job acknowledges on the health server: both on, on a free port."""
    settings = local_settings({}, QUEUE, "http://127.0.0.1:9", 8080)
    assert (settings.async_ack, settings.health_server, settings.health_port) == (True, True, 0)
    assert not local_settings({}, QUEUE, "http://127.0.0.1:9", None).async_ack
    assert not local_settings({"async_ack": False}, QUEUE, "http://127.0.0.1:9", 8080).async_ack


def test_settings_that_would_reach_aws_are_turned_off_one_warning_each() -> None:
    """An EB-style configuration: the Health metric, dedup and the queue/endpoint/region settings
    give way to the emulator, and each is named in a warning."""
    eb = {
        "environment_name": "prod",
        "dedup": True,
        "dedup_table": "t",
        "queue_url": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "region": "eu-west-1",
    }
    with capture_logs() as logs:
        settings = local_settings(eb, QUEUE, "http://127.0.0.1:9", None)
    assert (settings.health_metric, settings.dedup, settings.cloudwatch_metrics) == (False, False, False)
    assert (settings.queue_url, settings.endpoint_url, settings.region) == (
        QUEUE,
        "http://127.0.0.1:9",
        "us-east-1",
    )
    assert [entry["event"] for entry in logs] == [
        "settings-ignored",
        "health-metric-disabled",
        "dedup-disabled",
    ]
    assert logs[0]["settings"] == ["queue_url", "region"]


def test_local_polls_briefly_unless_told_otherwise() -> None:
    assert local_settings({}, QUEUE, "http://127.0.0.1:9", None).wait_time_s == LOCAL_WAIT_TIME_S
    assert local_settings({"wait_time_s": 5}, QUEUE, "http://127.0.0.1:9", None).wait_time_s == 5


def test_only_flags_that_ask_for_something_are_refused() -> None:
    sources = {
        "dedup": "flag --dedup",
        "region": "env AWS_REGION",
        "cloudwatch_metrics": "flag --no-cloudwatch-metrics",
    }
    values = {"dedup": True, "region": "eu-west-1", "cloudwatch_metrics": False}
    assert refused_flags(sources, values) == [f"--dedup: {REFUSED_FLAGS['dedup']}"]
    worker = {"http_port": "flag --http-port"}
    assert refused_flags(worker, {"http_port": 8080}) == []
    assert refused_flags(worker, {"http_port": 8080}, demo=True) == [
        "--http-port: --demo delivers to its built-in worker; drop --demo to use your own"
    ]


def test_the_shells_aws_identity_is_replaced_by_local_credentials() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAREAL", "AWS_SESSION_TOKEN": "tok", "AWS_PROFILE": "prod", "HOME": "/h"}
    assert isolate_from_aws(env) == ["AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_PROFILE"]
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "local"
    assert "AWS_SESSION_TOKEN" not in env and "AWS_PROFILE" not in env and env["HOME"] == "/h"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"


def test_send_commands_name_the_queue_unless_it_is_the_default() -> None:
    assert send_commands(9324, "default")[0] == 'asqsd send \'{"hello": "world"}\''
    fifo = send_commands(9400, "jobs.fifo")[0]
    assert fifo.startswith(
        "asqsd send --queue-url http://127.0.0.1:9400/000000000000/jobs.fifo --group-id demo "
    )
