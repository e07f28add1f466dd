"""Settings: stock keys and defaults, source precedence, EB option names, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from asqsd.config import describe_settings, load_settings, parse_status_spec
from asqsd.errors import ConfigError

STOCK_DEFAULTS = {
    "queue_url": None,
    "http_url": "http://localhost",
    "http_port": 80,
    "http_path": "/",
    "mime_type": "application/json",
    "http_connections": 50,
    "connect_timeout": 5,
    "inactivity_timeout": 299,
    "visibility_timeout": 300,
    "error_visibility_timeout": 2,
    "retention_period": 345600,
}


def test_stock_defaults() -> None:
    """Every stock key has the documented default."""
    settings = load_settings({}, {}).settings
    for key, value in STOCK_DEFAULTS.items():
        assert getattr(settings, key) == value, key
    assert settings.success_statuses == frozenset({200})
    assert settings.user_agent.startswith("aws-sqsd/")
    assert settings.wait_time_s == 20


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("http_connections", 0),
        ("http_connections", 101),
        ("connect_timeout", 61),
        ("inactivity_timeout", 36001),
        ("visibility_timeout", 43201),
        ("retention_period", 59),
        ("http_port", 70000),
        ("wait_time_s", 21),
    ],
)
def test_out_of_range_values_are_rejected(key: str, bad: int) -> None:
    """Stock ranges are enforced; the message names key, value and source."""
    with pytest.raises(ConfigError) as caught:
        load_settings({key: bad}, {})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{key}={bad!r} (from flag --{key.replace('_', '-')})")


def test_precedence_cli_over_env_over_eb_env_over_file(tmp_path: Path) -> None:
    """CLI > ASQSD_* env > EB option names in env > config file > default."""
    config = tmp_path / "default.yaml"
    config.write_text("http_path: /file\nmime_type: text/file\nhttp_port: 81\nvisibility_timeout: 40\n")
    env = {"ASQSD_MIME_TYPE": "text/env", "HttpPath": "/eb", "ASQSD_HTTP_PATH": "/env"}
    loaded = load_settings({"http_path": "/cli"}, env, config)
    settings = loaded.settings
    assert settings.http_path == "/cli"
    assert settings.mime_type == "text/env"
    assert settings.http_port == 81
    assert loaded.sources["http_path"] == "flag --http-path"
    assert loaded.sources["mime_type"] == "env ASQSD_MIME_TYPE"
    assert loaded.sources["http_port"] == f"file {config}: http_port"
    assert loaded.sources["connect_timeout"] == "default"


def test_eb_option_names_in_file_and_env(tmp_path: Path) -> None:
    """WorkerQueueURL & co. work in the config file; MaxConcurrentAPIConnections is HttpConnections."""
    config = tmp_path / "eb.yaml"
    config.write_text(
        "WorkerQueueURL: https://sqs.eu-west-1.amazonaws.com/1/q\nHttpPath: /w\nMimeType: text/plain\n"
        "ConnectTimeout: 7\nInactivityTimeout: 100\nVisibilityTimeout: 200\nErrorVisibilityTimeout: 9\n"
        "RetentionPeriod: 600\n"
    )
    settings = load_settings({}, {"MaxConcurrentAPIConnections": "12"}, config).settings
    assert settings.queue_url == "https://sqs.eu-west-1.amazonaws.com/1/q"
    assert (settings.http_path, settings.mime_type, settings.http_connections) == ("/w", "text/plain", 12)
    assert (settings.connect_timeout, settings.inactivity_timeout, settings.visibility_timeout) == (
        7,
        100,
        200,
    )
    assert (settings.error_visibility_timeout, settings.retention_period) == (9, 600)


def test_missing_inactivity_timeout_falls_back_to_visibility_timeout(tmp_path: Path) -> None:
    """Stock rule: the file sets visibility_timeout only → inactivity_timeout follows it."""
    config = tmp_path / "default.yaml"
    config.write_text("visibility_timeout: 120\n")
    loaded = load_settings({}, {}, config)
    assert loaded.settings.inactivity_timeout == 120
    assert "fallback" in loaded.sources["inactivity_timeout"]


def test_drain_timeout_sets_the_grace_period(tmp_path: Path) -> None:
    """Stock key drain_timeout (how long in-flight work may finish at shutdown) becomes
    shutdown_grace_s, and `asqsd config` names it as the source."""
    config = tmp_path / "default.yaml"
    config.write_text("drain_timeout: 600\n")
    loaded = load_settings({}, {}, config)
    assert loaded.settings.shutdown_grace_s == 600
    assert loaded.sources["shutdown_grace_s"] == f"file {config}: drain_timeout"
    assert loaded.warnings == []
    assert load_settings({}, {}).settings.shutdown_grace_s == 25  # absent: asqsd's default


@pytest.mark.parametrize(
    ("file_text", "env", "cli", "source"),
    [
        ("drain_timeout: 600\nshutdown_grace_s: 40\n", {}, {}, "file"),
        ("shutdown_grace_s: 40\ndrain_timeout: 600\n", {}, {}, "file"),  # order does not matter
        ("drain_timeout: 600\n", {"ASQSD_SHUTDOWN_GRACE_S": "40"}, {}, "env ASQSD_SHUTDOWN_GRACE_S"),
        ("drain_timeout: 600\n", {}, {"shutdown_grace_s": 40}, "flag --shutdown-grace-s"),
    ],
)
def test_an_explicit_shutdown_grace_s_wins_over_drain_timeout(
    tmp_path: Path, file_text: str, env: dict[str, str], cli: dict[str, object], source: str
) -> None:
    """shutdown_grace_s from any source beats the stock key, with a warning saying so."""
    config = tmp_path / "default.yaml"
    config.write_text(file_text)
    loaded = load_settings(cli, env, config)
    assert loaded.settings.shutdown_grace_s == 40
    assert loaded.sources["shutdown_grace_s"].startswith(source)
    assert [w for w in loaded.warnings if "drain_timeout=600 is overridden by shutdown_grace_s" in w]


def test_out_of_range_drain_timeout_names_the_stock_key(tmp_path: Path) -> None:
    """A drain_timeout beyond shutdown_grace_s's range is rejected, naming where it came from."""
    config = tmp_path / "default.yaml"
    config.write_text("drain_timeout: 7200\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, config)
    assert "drain_timeout" in caught.value.problems[0]
    assert "shutdown_grace_s=7200" in caught.value.problems[0]


def test_dedup_needs_its_table(tmp_path: Path) -> None:
    """Stock keys dedup / dedup_table load; dedup without a table is a config error."""
    config = tmp_path / "default.yaml"
    config.write_text("dedup: true\ndedup_table: sqsd-dedup\n")
    loaded = load_settings({}, {}, config)
    assert (loaded.settings.dedup, loaded.settings.dedup_table) == (True, "sqsd-dedup")
    assert loaded.warnings == []
    with pytest.raises(ConfigError, match="dedup needs dedup_table"):
        load_settings({"dedup": True}, {})


def test_async_ack_is_off_by_default_and_refused_without_what_it_needs() -> None:
    """async_ack needs the health server (the ack URL lives there) and the heartbeat; 202 cannot
    be a success status as well; dedup is not combined with it."""
    defaults = load_settings({}, {}).settings
    assert (defaults.async_ack, defaults.max_async_jobs, defaults.async_ack_deadline_s) == (False, 100, 3600)
    on = load_settings({"async_ack": "true", "health_server": "true"}, {}).settings
    assert on.async_ack
    cases = [
        ({}, "async_ack needs health_server"),
        ({"health_server": True, "heartbeat": False}, "async_ack needs heartbeat"),
        ({"health_server": True, "visibility_timeout": 0}, "async_ack needs heartbeat"),
        ({"health_server": True, "success_statuses": "2xx"}, "remove 202 from success_statuses"),
        ({"health_server": True, "dedup": True, "dedup_table": "t"}, "cannot be combined with dedup"),
        ({"health_server": True, "async_ack_deadline_s": 0.5}, "async_ack_deadline_s=0.5"),
        ({"health_server": True, "max_async_jobs": 0}, "max_async_jobs=0"),
    ]
    for extra, says in cases:
        with pytest.raises(ConfigError) as raised:
            load_settings({"async_ack": True, **extra}, {})
        assert says in str(raised.value), (extra, str(raised.value))


def test_negative_error_visibility_means_unset() -> None:
    """-1 (or null) disables the visibility change after a failure; 0 is honoured."""
    assert load_settings({"error_visibility_timeout": -1}, {}).settings.error_visibility_timeout is None
    assert load_settings({"error_visibility_timeout": 0}, {}).settings.error_visibility_timeout == 0


def test_unknown_and_ignored_stock_keys_warn(tmp_path: Path) -> None:
    """Stock keys asqsd does not use and typos are warnings, not errors (drop-in files keep working)."""
    config = tmp_path / "default.yaml"
    config.write_text("threads: 30\nkeepalive: true\nhttp_conections: 4\n")
    warnings = load_settings({}, {}, config).warnings
    assert any("'threads' is accepted but not used" in w for w in warnings)
    assert not any("unknown key 'keepalive'" in w for w in warnings)
    assert any("'http_conections'" in w and "did you mean 'http_connections'" in w for w in warnings)


def test_strict_makes_unknown_keys_errors(tmp_path: Path) -> None:
    """--strict: an unknown key is a config error naming it with the hint; unused stock keys still
    only warn."""
    config = tmp_path / "default.yaml"
    config.write_text("threads: 30\nhttp_conections: 4\n")
    with pytest.raises(ConfigError) as raised:
        load_settings({}, {}, config, strict=True)
    assert raised.value.problems == [
        f"config file {config}: unknown key 'http_conections' (did you mean 'http_connections'?) (--strict)"
    ]
    config.write_text("threads: 30\n")
    assert len(load_settings({}, {}, config, strict=True).warnings) == 1


@pytest.mark.parametrize("spec", ["2xx,abc", "abc", "2x0", "200-abc", "-", "1e3", "２００"])
def test_bad_status_specs_are_named_in_plain_words(spec: str) -> None:
    """A bad success_statuses value names the bad part; no Python exception text leaks."""
    with pytest.raises(ConfigError) as raised:
        load_settings({"success_statuses": spec}, {})
    (problem,) = raised.value.problems
    assert problem.startswith(f"success_statuses={spec!r} (from flag --success-statuses): ")
    assert "is not a status (200), a range (200-299) or a class (2xx)" in problem
    assert "invalid literal" not in problem and "Value error" not in problem


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("queue_url: [unclosed", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_malformed_config_file(tmp_path: Path, text: str, fragment: str) -> None:
    """A broken file is one clear problem naming the file."""
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, config)
    assert fragment in caught.value.problems[0]
    assert str(config) in caught.value.problems[0]


def test_missing_config_file() -> None:
    """A config path that does not exist is reported, not a traceback."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, Path("/nonexistent/default.yaml"))
    assert caught.value.problems == [
        "config file /nonexistent/default.yaml: cannot read: No such file or directory"
    ]


def test_every_problem_is_reported_with_its_source() -> None:
    """Two bad values from two sources: two lines."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"http_port": "eighty"}, {"ASQSD_VISIBILITY_TIMEOUT": "-5"})
    problems = caught.value.problems
    assert len(problems) == 2
    assert any("http_port='eighty' (from flag --http-port)" in p for p in problems)
    assert any("visibility_timeout='-5' (from env ASQSD_VISIBILITY_TIMEOUT)" in p for p in problems)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("http_path", "no-slash"),
        ("http_path", "/a b"),
        ("http_url", "localhost"),
        ("mime_type", "text/plain\r\nX-Evil: 1"),
        ("user_agent", ""),
        ("queue_url", "sqs.us-east-1.amazonaws.com/1/q"),
        ("success_statuses", "abc"),
        ("success_statuses", "700"),
        ("loop", "trio"),
    ],
)
def test_invalid_values(key: str, value: str) -> None:
    """Values that would break requests are refused at start-up."""
    with pytest.raises(ConfigError):
        load_settings({key: value}, {})


def test_status_spec() -> None:
    """'2xx', lists and ranges."""
    assert parse_status_spec("200") == {200}
    assert parse_status_spec("2xx") == set(range(200, 300))
    assert parse_status_spec("200, 204") == {200, 204}
    assert parse_status_spec("200-202") == {200, 201, 202}


def test_derived_defaults() -> None:
    """Receivers and buffer follow http_connections unless set."""
    settings = load_settings({"http_connections": 50}, {}).settings
    assert settings.receiver_count == 5
    assert settings.buffer_capacity == 50
    assert load_settings({"http_connections": 1}, {}).settings.receiver_count == 1
    assert load_settings({"receivers": 3, "channel_capacity": 7}, {}).settings.buffer_capacity == 7


def test_describe_lists_every_key_with_source() -> None:
    """`asqsd config` rows."""
    rows = describe_settings(load_settings({"http_port": 8080}, {}))
    by_key = {key: (value, source) for key, value, source in rows}
    assert by_key["http_port"] == ("8080", "flag --http-port")
    assert by_key["success_statuses"] == ("200", "default")


def test_stock_file_keys(tmp_path: Path) -> None:
    """The keys of /etc/aws-sqsd.d/default.yaml, as the platform writes them, all load."""
    config = tmp_path / "default.yaml"
    config.write_text(
        "queue_url: https://sqs.us-west-2.amazonaws.com/123456789012/awseb-e-x-stack-AWSEBWorkerQueue-1\n"
        "http_path: /worker\nmime_type: application/json\nhttp_connections: 10\nconnect_timeout: 5\n"
        "inactivity_timeout: 299\nvisibility_timeout: 300\nerror_visibility_timeout: 2\n"
        "retention_period: 345600\nregistry_table: awseb-e-x-stack-AWSEBWorkerCronLeaderRegistry-1\n"
        "environment_name: my-env\nhealthcheck: TCP:80\n"
    )
    loaded = load_settings({}, {}, config)
    settings = loaded.settings
    assert settings.registry_table == "awseb-e-x-stack-AWSEBWorkerCronLeaderRegistry-1"
    assert settings.environment_name == "my-env"
    assert settings.http_connections == 10
    assert settings.healthcheck == "TCP:80"
    assert loaded.warnings == []


def test_http_url_with_port_wins() -> None:
    """http_url may carry the port (handy for `asqsd local --http-url http://localhost:8080`)."""
    assert (
        load_settings({"http_url": "http://localhost:8080"}, {}).settings.worker_url
        == "http://localhost:8080"
    )
    assert load_settings({"http_port": 81}, {}).settings.worker_url == "http://localhost:81"
    with pytest.raises(ConfigError):
        load_settings({"http_url": "http://localhost/path"}, {})


def test_error_backoff_is_off_by_default_and_reads_a_yaml_off(tmp_path: Path) -> None:
    """Off (stock) unless set; ``error_backoff: off`` in a file (YAML reads false) is off, other
    values than off/exponential are rejected naming the key."""
    assert load_settings({}, {}).settings.error_backoff == "off"
    config = tmp_path / "default.yaml"
    config.write_text("error_backoff: off\nerror_backoff_max_s: 600\n")
    settings = load_settings({}, {}, config).settings
    assert (settings.error_backoff, settings.error_backoff_max_s) == ("off", 600)
    config.write_text("error_backoff: exponential\n")
    assert load_settings({}, {}, config).settings.error_backoff == "exponential"
    with pytest.raises(ConfigError) as caught:
        load_settings({"error_backoff": "linear"}, {})
    assert caught.value.problems[0].startswith("error_backoff='linear'")
