"""`asqsd local` settings: never CloudWatch metrics, whatever the user's configuration says."""

from __future__ import annotations

from structlog.testing import capture_logs

from asqsd.cli.local import local_settings

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
