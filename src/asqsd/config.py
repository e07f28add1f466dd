"""One settings model for every option, and the loader that layers its sources.

Keys are the stock daemon's snake_case names (the keys of ``/etc/aws-sqsd.d/default.yaml``) so a
platform team can point asqsd at the file the platform already writes; asqsd's own keys carry
their unit in the name. Precedence, highest first: CLI flags, ``ASQSD_<KEY>`` environment
variables, Elastic Beanstalk option names as environment variables, the ``--config`` file,
defaults. Every value remembers where it came from so errors and ``asqsd config`` can say so.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asqsd import __version__
from asqsd.addresses import HTTP_SCHEMES, is_loopback_host, url_address
from asqsd.errors import ConfigError

ENV_PREFIX = "ASQSD_"
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Option names of the aws:elasticbeanstalk:sqsd namespace → our keys.
EB_OPTION_NAMES: dict[str, str] = {
    "WorkerQueueURL": "queue_url",
    "HttpPath": "http_path",
    "MimeType": "mime_type",
    "HttpConnections": "http_connections",
    "MaxConcurrentAPIConnections": "http_connections",
    "ConnectTimeout": "connect_timeout",
    "InactivityTimeout": "inactivity_timeout",
    "VisibilityTimeout": "visibility_timeout",
    "ErrorVisibilityTimeout": "error_visibility_timeout",
    "RetentionPeriod": "retention_period",
    "MaxRetries": "max_retries",
}

# Stock file keys that map to an asqsd key of another name.
STOCK_KEY_ALIASES: dict[str, str] = {"via_sns": "unwrap_sns", "cloudwatch_interval": "cloudwatch_interval_s"}

# Stock file keys that set an asqsd key only when no source sets that key itself.
STOCK_KEY_FALLBACKS: dict[str, str] = {"drain_timeout": "shutdown_grace_s"}

# Keys the stock daemon reads that asqsd accepts in its file but does not use (warned, not fatal).
# docs/migrating.md says for each why it has no meaning for asqsd.
STOCK_KEYS_IGNORED = frozenset(
    {
        "keepalive",
        "threads",
        "concurrent_sqs_polls",
        "backlog_size",
        "sqs_batch_delete",
        "sqs_batch_delete_size",
        "sqs_batch_receive_size",
        "batch_delete_timer",
        "sqs_ssl",
        "sqs_verify_checksums",
        "dynamodb_ssl",
        "sqs_wait_time_seconds",
        "sqs_max_wait_time_seconds",
        "sqs_max_batch_size",
        "current_sqs_max_batch_size",
        "poll_timer",
        "idle_mode_delay",
        "backlog_process_time",
        "autotuning_threshold_slow",
        "autotuning_threshold_slowest",
        "poll_mode_switch_interval",
        "record_message_retries",
        "hole_detection_retries",
        "message_resend_grace_period",
        "verbose",
        "debug",
        "quiet",
        "trap",
    }
)

# Settings whose values never appear in full in `asqsd config` or logs.
SECRET_KEYS = frozenset({"aws_secret_access_key"})


class Settings(BaseModel):
    """Validated, frozen daemon settings. Build it with :func:`load_settings`, not directly.

    A plain model: :func:`load_settings` reads every source itself (to know where each value came
    from), so nothing reads the environment behind its back. Defaults are validated like given
    values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # --- stock keys (aws:elasticbeanstalk:sqsd) -------------------------------------------------
    queue_url: str | None = Field(
        None, description="SQS queue URL to poll (WorkerQueueURL). Required to run."
    )
    http_url: str = Field("http://localhost", description="Scheme and host of the worker (stock hidden key).")
    http_port: int = Field(80, ge=1, le=65535, description="Worker port (stock hidden key).")
    http_path: str = Field("/", description="Path messages are POSTed to (HttpPath).")
    mime_type: str = Field("application/json", description="Content-Type of every POST (MimeType).")
    http_connections: int = Field(50, ge=1, le=100, description="Max concurrent POSTs (HttpConnections).")
    connect_timeout: float = Field(5, ge=1, le=60, description="Seconds allowed to connect to the worker.")
    inactivity_timeout: float = Field(
        299,
        ge=1,
        le=36000,
        description="Idle seconds without response bytes before a POST fails; falls back to "
        "visibility_timeout when only that is set.",
    )
    # Worker connection reuse and failure diagnostics (asqsd extensions).
    worker_keepalive_idle_s: float = Field(
        1.5,
        ge=0,
        le=3600,
        description="Seconds a kept-alive worker connection may sit idle and still be reused; keep it "
        "below the worker's keep-alive timeout (gunicorn 2, uvicorn 5). 0 never reuses one.",
    )
    log_response_bytes: int = Field(
        256,
        ge=0,
        le=65536,
        description="First bytes of a failed response's body shown in the failure log line; 0 shows none.",
    )
    visibility_timeout: int = Field(300, ge=0, le=43200, description="VisibilityTimeout set on each receive.")
    error_visibility_timeout: int | None = Field(
        2,
        le=43200,
        description="Visibility after a failed delivery; negative or null leaves visibility unchanged.",
    )
    retention_period: int = Field(
        345600, ge=60, le=1209600, description="Delete without delivery once first received this long ago."
    )
    registry_table: str | None = Field(None, description="DynamoDB table for periodic-task leader election.")
    environment_name: str | None = Field(None, description="Environment name (CloudWatch dimension).")
    dedup: bool = Field(
        False,
        description="Skip messages the dedup_table records as processed or in progress (stock 2.0 "
        "DynamoDB duplicate suppression).",
    )
    dedup_table: str | None = Field(
        None, description="DynamoDB table of message ids for dedup (hash key partition N, range key id S)."
    )

    # --- asqsd's own keys ---------------------------------------------------------------------
    endpoint_url: str | None = Field(
        None,
        description="SQS endpoint; default AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, else the queue URL's "
        "host when it is not AWS (or a VPC endpoint / FIPS host), else the region's AWS endpoint.",
    )
    region: str | None = Field(
        None, description="AWS region; default the queue URL's, else AWS_REGION / the AWS profile."
    )
    sqs_client: Literal["lean", "botocore"] = Field(
        "lean",
        description="SQS client for the hot path: lean (signed aiohttp, ~4x less CPU) or botocore "
        "(aiobotocore). Both use botocore's credentials and the same region and endpoint.",
    )
    http_client: Literal["lean", "aiohttp"] = Field(
        "lean",
        description="Worker HTTP client: lean (asyncio protocol, ~1/3 of aiohttp's CPU per POST) or aiohttp.",
    )
    receivers: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Concurrent ReceiveMessage loops; default ceil(http_connections / 10).",
    )
    wait_time_s: int = Field(20, ge=0, le=20, description="Long-poll WaitTimeSeconds of each receive.")
    channel_capacity: int | None = Field(
        None, ge=1, le=1000, description="Messages buffered ahead of dispatchers; default http_connections."
    )
    heartbeat: bool = Field(True, description="Extend visibility of held messages before it lapses.")
    success_statuses: frozenset[int] = Field(
        frozenset({200}),
        description="Worker statuses that count as success: '200' (stock), '2xx', '200,204'.",
    )
    user_agent: str = Field(f"aws-sqsd/{__version__}", description="User-Agent header of every POST.")
    shutdown_grace_s: float = Field(
        25,
        ge=0,
        le=3600,
        description="Seconds in-flight POSTs may take to finish after SIGTERM; the stock file key "
        "drain_timeout sets it when nothing else does.",
    )
    cancel_deadline_s: float = Field(5, ge=0, le=60, description="Seconds cancelled POSTs get to unwind.")
    release_buffered_on_shutdown: bool = Field(
        True, description="On shutdown make unstarted messages visible at once (else let them finish)."
    )
    delete_batch_wait_s: float = Field(
        0.05, ge=0, le=2, description="Max seconds a delete/visibility change waits to fill a batch."
    )
    flush_timeout_s: float = Field(10, ge=0.1, le=300, description="Bound on the final flush of deletes.")
    retry_after_max_s: int = Field(
        43200, ge=0, le=43200, description="Cap on a worker's Retry-After used as visibility delay."
    )
    # --- retries that back off (asqsd extension; off is the stock fixed delay) -------------------
    error_backoff: Literal["off", "exponential"] = Field(
        "off",
        description="Visibility delay after a failure: 'off' is always error_visibility_timeout (stock); "
        "'exponential' doubles it with each receive, jittered, capped by error_backoff_max_s.",
    )
    error_backoff_max_s: int = Field(
        43200, ge=0, le=43200, description="Cap on the delay error_backoff 'exponential' computes."
    )

    # --- worker outage hold (asqsd's own; off: stock, every failure gets the error visibility) ---
    worker_outage_hold: bool = Field(
        True,
        description="While the worker is unreachable, hold messages leased and pause receiving, so "
        "an outage costs no receive attempts (needs heartbeat); false: stock behaviour.",
    )
    outage_threshold: int = Field(
        3, ge=1, le=1000, description="Unreachable deliveries in a row that open a worker outage."
    )
    outage_statuses: frozenset[int] | None = Field(
        None,
        description="Worker statuses that also count as unreachable, e.g. '502,503'; default none.",
    )
    # --- delivery rate limit (asqsd's own; off: stock, as fast as http_connections allow) ------
    max_messages_per_s: float | None = Field(
        None,
        gt=0,
        le=100000,
        description="Deliver at most this many messages a second (a token bucket in front of the "
        "dispatchers; receiving follows it); default unset: no limit.",
    )
    rate_limit_burst: int = Field(
        1,
        ge=1,
        le=100000,
        description="Deliveries max_messages_per_s lets through at once after an idle spell; 1 spaces "
        "every delivery evenly.",
    )

    # --- asynchronous acknowledgement (asqsd extension, docs/daemon.md; off: stock) ------------
    async_ack: bool = Field(
        False,
        description="Send an X-Asqsd-Ack-Url with every POST; a 202 answer keeps the message leased "
        "until the worker POSTs its outcome there (needs health_server and heartbeat).",
    )
    max_async_jobs: int = Field(
        100,
        ge=1,
        le=10000,
        description="Jobs answered 202 held at once, counting POSTs in progress; when full, no new POST "
        "starts and receiving slows.",
    )
    async_ack_deadline_s: float = Field(
        3600,
        ge=1,
        le=43200,
        description="Seconds a 202 job may go without an acknowledgement (done, fail or extend) before "
        "its message is released for redelivery.",
    )

    cron_file: str | None = Field(
        None, description="cron.yaml to use; default: the application directory, as the stock daemon looks."
    )
    health_server: bool = Field(False, description="Serve /healthz, /readyz and /metrics (Prometheus).")
    health_host: str = Field("127.0.0.1", description="Health server address; loopback unless allowed.")
    health_port: int = Field(9325, ge=0, le=65535, description="Health server port (0 picks a free one).")
    health_allow_remote: bool = Field(
        False, description="Allow a non-loopback health_host (the endpoints have no authentication)."
    )
    health_check_ttl_s: float = Field(5, ge=0, le=300, description="Seconds readiness checks are cached.")
    pause_control: bool = Field(
        False,
        description="Allow pausing intake: POST /pause and /resume on the health server (asqsd pause, "
        "asqsd resume) and the worker's X-Asqsd-Pause-Seconds response header.",
    )
    backlog_poll_interval_s: float = Field(
        5, ge=0, le=3600, description="Queue backlog poll for metrics (with health_server); 0 disables."
    )
    health_metric: bool = Field(
        True,
        description="Publish the CloudWatch ElasticBeanstalk/SQSD Health metric when environment_name is set",
    )
    cloudwatch_interval_s: float = Field(60, ge=5, le=3600, description="Health metric interval (stock key).")
    fault_file: str | None = Field(
        None, description="fault.json written while unhealthy (EB: /var/run/aws-sqsd)."
    )
    healthcheck: str | None = Field(
        None, description="Worker health check, stock form TCP:<port> or HTTP:<port><path>; default TCP."
    )
    stock_log_file: str | None = Field(
        None, description="Also write stock-format lines here (EB: /var/log/aws-sqsd/default.log)."
    )
    # CloudWatch metrics beyond Health (docs/observability.md): EMF lines and/or PutMetricData.
    emf_file: str | None = Field(
        None, description="Write CloudWatch EMF metric lines here each interval ('-': stdout)."
    )
    emf_interval_s: float = Field(
        60, ge=1, le=3600, description="Interval of the EMF lines and of cloudwatch_metrics."
    )
    emf_namespace: str = Field(
        "asqsd", min_length=1, max_length=255, description="CloudWatch namespace of the EMF/direct metrics."
    )
    cloudwatch_metrics: bool = Field(
        False, description="Publish the EMF metrics with PutMetricData (hosts without a CloudWatch agent)."
    )
    unwrap_sns: bool = Field(
        False, description="POST the inner Message of SNS envelopes (stock key via_sns)."
    )
    # --- trace context and caller authentication (docs/daemon.md, asqsd extensions) -----------
    trace_headers: bool = Field(
        False,
        description="Forward the producer's trace context: AWSTraceHeader as X-Amzn-Trace-Id, the "
        "traceparent/tracestate attributes as W3C Trace Context headers (valid values only).",
    )
    otel_tracing: bool = Field(
        False,
        description="OpenTelemetry spans for receive, deliver (POST) and delete, through the process's "
        "tracer provider; needs asqsd's otel extra (the OpenTelemetry API).",
    )
    request_signing_secret_file: str | None = Field(
        None,
        description="File holding the secret that signs every POST (X-Asqsd-Signature, HMAC-SHA256); "
        "read once at start-up.",
    )
    request_signing_secret_env: str | None = Field(
        None, description="Name of the environment variable holding the signing secret (instead of a file)."
    )
    worker_bearer_token_file: str | None = Field(
        None,
        description="File holding a token sent as Authorization: Bearer on every POST; read at start-up.",
    )
    worker_bearer_token_env: str | None = Field(
        None, description="Name of the environment variable holding the bearer token (instead of a file)."
    )
    # --- S3 payloads of the AWS extended client libraries (docs/daemon.md, "S3 pointers") --------
    resolve_s3_pointers: bool = Field(
        False,
        description="POST the S3 object an extended-client pointer message names instead of the pointer "
        "(needs s3:GetObject).",
    )
    delete_s3_payload_after_success: bool = Field(
        False,
        description="With resolve_s3_pointers: delete the S3 object once its message is deleted "
        "(needs s3:DeleteObject).",
    )
    # --- dead-lettering by asqsd (docs/daemon.md, "Dead-letter queue") --------------------------
    dead_letter_statuses: frozenset[int] | None = Field(
        None,
        description="Worker statuses that move a message to the dead-letter queue at once, e.g. '400,422' "
        "(default none).",
    )
    max_retries: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Receives after which a failing message is moved to the dead-letter queue (stock "
        "MaxRetries key; default none: the queue's redrive policy decides).",
    )
    dead_letter_queue_url: str | None = Field(
        None,
        description="Dead-letter queue for dead_letter_statuses and max_retries; default the queue's "
        "redrive target (required when the redrive policy cannot be read).",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Minimum log level.")
    log_settled: bool = Field(
        False,
        description="Log each delivered message's outcome (settled) at info, not debug; asqsd local "
        "turns it on.",
    )
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="Event loop: uvloop when available."
    )

    @field_validator("error_visibility_timeout")
    @classmethod
    def _negative_means_unset(cls, value: int | None) -> int | None:
        return None if value is None or value < 0 else value

    @field_validator("error_backoff", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare ``off`` as false: ``error_backoff: off`` in a file means "off".
        return "off" if value is False else value

    @field_validator("success_statuses", "dead_letter_statuses", "outage_statuses", mode="before")
    @classmethod
    def _parse_statuses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_status_spec(value)
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator("success_statuses", "dead_letter_statuses", "outage_statuses")
    @classmethod
    def _check_statuses(cls, value: frozenset[int] | None) -> frozenset[int] | None:
        if value is not None and (not value or any(not 100 <= s <= 599 for s in value)):
            raise ValueError("must be HTTP statuses between 100 and 599")
        return value

    @field_validator("http_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("must start with '/' and contain no whitespace or control characters")
        return value

    @field_validator("http_url", "endpoint_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in HTTP_SCHEMES or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must not carry a path or query (use http_path)")
        try:
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value.rstrip("/")

    @field_validator("mime_type", "user_agent")
    @classmethod
    def _check_header_safe(cls, value: str) -> str:
        if not value or any(ord(c) < 32 or ord(c) == 127 or ord(c) > 255 for c in value):
            raise ValueError("must be a non-empty header value without control characters")
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        # botocore's own rule; anything else would only fail later, at start-up, with a traceback.
        if value is not None and not _REGION.fullmatch(value):
            raise ValueError("must look like an AWS region name, e.g. us-east-1")
        return value

    @field_validator("dead_letter_queue_url")
    @classmethod
    def _check_queue_url_form(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in HTTP_SCHEMES or not parts.hostname or parts.path.strip("/") == "":
            raise ValueError(
                "must be an http(s) SQS queue URL, e.g. https://sqs.<region>.amazonaws.com/<account>/<name>"
            )
        return value

    @field_validator("healthcheck")
    @classmethod
    def _check_healthcheck(cls, value: str | None) -> str | None:
        if value is not None:
            WorkerHealthcheck.parse(value)  # raises ValueError with the reason
        return value

    @field_validator("request_signing_secret_env", "worker_bearer_token_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and _ENV_NAME.fullmatch(value) is None:
            raise ValueError("must be an environment variable name (letters, digits, '_'), not its value")
        return value

    @model_validator(mode="after")
    def _check_secret_sources(self) -> Settings:
        for file_key, env_key in (
            ("request_signing_secret_file", "request_signing_secret_env"),
            ("worker_bearer_token_file", "worker_bearer_token_env"),
        ):
            if getattr(self, file_key) is not None and getattr(self, env_key) is not None:
                raise ValueError(f"set {file_key} or {env_key}, not both")
        return self

    @model_validator(mode="after")
    def _check_health_host(self) -> Settings:
        if self.health_server and not self.health_allow_remote and not is_loopback_host(self.health_host):
            raise ValueError(
                f"health_host {self.health_host!r} is not loopback; set health_allow_remote to allow"
            )
        return self

    @model_validator(mode="after")
    def _check_dedup_table(self) -> Settings:
        if self.dedup and not self.dedup_table:
            raise ValueError("dedup needs dedup_table (the DynamoDB table of processed message ids)")
        return self

    @model_validator(mode="after")
    def _check_queue_url(self) -> Settings:
        if self.queue_url is not None and not self.queue_url.startswith(("http://", "https://")):
            raise ValueError("queue_url must be an http(s) SQS queue URL")
        if self.dead_letter_queue_url is not None and self.dead_letter_queue_url == self.queue_url:
            raise ValueError("dead_letter_queue_url must be another queue than queue_url")
        return self

    @model_validator(mode="after")
    def _check_rate_limit(self) -> Settings:
        if "rate_limit_burst" in self.model_fields_set and self.max_messages_per_s is None:
            raise ValueError("rate_limit_burst needs max_messages_per_s (the rate it lets bursts of)")
        return self

    @model_validator(mode="after")
    def _check_s3_payload_delete(self) -> Settings:
        if self.delete_s3_payload_after_success and not self.resolve_s3_pointers:
            raise ValueError(
                "delete_s3_payload_after_success needs resolve_s3_pointers (no pointer is resolved)"
            )
        signing = self.request_signing_secret_file or self.request_signing_secret_env
        if self.resolve_s3_pointers and signing:
            # The signature covers the body, so it must be known before the POST starts; an S3
            # payload is streamed as it arrives and never held whole.
            raise ValueError(
                "request signing cannot sign S3 payloads that resolve_s3_pointers streams: turn one "
                "off, or authenticate with worker_bearer_token_file/_env instead"
            )
        return self

    @model_validator(mode="after")
    def _check_dead_letter_statuses(self) -> Settings:
        if overlap := (self.dead_letter_statuses or frozenset()) & self.success_statuses:
            listed = ",".join(str(s) for s in sorted(overlap))
            raise ValueError(f"dead_letter_statuses and success_statuses share {listed}")
        return self

    @model_validator(mode="after")
    def _check_async_ack(self) -> Settings:
        if not self.async_ack:
            return self
        if not self.health_server:
            raise ValueError("async_ack needs health_server: the acknowledgement URL is served there")
        if not self.heartbeat or self.visibility_timeout < 1:
            raise ValueError("async_ack needs heartbeat (and visibility_timeout >= 1) to keep jobs leased")
        if 202 in self.success_statuses:
            raise ValueError("async_ack gives 202 its own meaning: remove 202 from success_statuses")
        if self.dedup:
            raise ValueError("async_ack cannot be combined with dedup")
        return self

    # --- derived values (computed once, never per message) ----------------------------------
    @property
    def receiver_count(self) -> int:
        """Concurrent ReceiveMessage loops: enough to keep the dispatchers fed, 10 messages each."""
        return self.receivers or max(1, math.ceil(self.http_connections / 10))

    @property
    def buffer_capacity(self) -> int:
        """How many received messages may wait for a free dispatcher."""
        return self.channel_capacity or self.http_connections

    @property
    def worker_url(self) -> str:
        """Scheme, host and port of the worker: a port written in ``http_url`` wins over ``http_port``."""
        if url_address(self.http_url).port_given:
            return self.http_url
        return f"{self.http_url}:{self.http_port}"


def parse_status_spec(spec: str) -> frozenset[int]:
    """Parse ``"200"``, ``"2xx"``, ``"200,204"`` or ``"200-299"`` into a set of statuses."""
    statuses: set[int] = set()
    for raw_part in spec.split(","):
        part = raw_part.strip().lower()
        if not part:
            continue
        if len(part) == 3 and part.endswith("xx") and part[0].isdigit():
            base = int(part[0]) * 100
            statuses.update(range(base, base + 100))
        elif "-" in part:
            low_text, _, high_text = part.partition("-")
            low, high = _status_number(low_text, part), _status_number(high_text, part)
            # Check the bounds before building the range: "100-99999999999" must not allocate.
            if not 100 <= low <= high <= 599:
                raise ValueError(f"status range {part!r} must lie within 100-599")
            statuses.update(range(low, high + 1))
        else:
            statuses.add(_status_number(part, part))
    return frozenset(statuses)


def _status_number(text: str, part: str) -> int:
    """One status number of a ``success_statuses`` part, or a ValueError naming the part in words."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{part!r} is not a status (200), a range (200-299) or a class (2xx)")
    return int(text)


@dataclass(slots=True)
class LoadedSettings:
    """Settings plus where each value came from and the warnings loading produced."""

    settings: Settings
    sources: dict[str, str]
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Layer:
    """Values from one source with a label per key (``env ASQSD_HTTP_PORT``...)."""

    values: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, tuple[Any, str]] = field(default_factory=dict)  # STOCK_KEY_FALLBACKS

    def put(self, key: str, value: Any, label: str) -> None:
        self.values[key] = value
        self.labels[key] = label


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    *,
    strict: bool = False,
) -> LoadedSettings:
    """Layer the sources, validate once, and report every problem with its key, value and source.

    Raises :class:`ConfigError` listing one line per problem; with ``strict`` an unknown key in the
    config file is one of them rather than a warning.
    """
    env = os.environ if env is None else env
    warnings: list[str] = []
    unknown: list[tuple[str, str]] = []  # (the key named, a did-you-mean hint)
    file_layer = _file_layer(config_file, warnings, unknown) if config_file else _Layer()
    if strict and unknown:
        raise ConfigError([f"{key}{hint} (--strict)" for key, hint in unknown])
    warnings.extend(f"{key} ignored{hint}" for key, hint in unknown)
    merged, labels = _merge([file_layer, _eb_env_layer(env), _env_layer(env), _cli_layer(cli or {})])
    _apply_stock_fallbacks(merged, labels, file_layer.fallbacks, warnings)
    _apply_inactivity_fallback(merged, labels)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, merged, labels)) from None
    sources = {name: labels.get(name, "default") for name in Settings.model_fields}
    return LoadedSettings(settings=settings, sources=sources, warnings=warnings)


def _merge(layers: list[_Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    merged: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for layer in layers:  # lowest precedence first; later layers overwrite
        merged.update(layer.values)
        labels.update(layer.labels)
    return merged, labels


def _apply_stock_fallbacks(
    merged: dict[str, Any],
    labels: dict[str, str],
    fallbacks: Mapping[str, tuple[Any, str]],
    warnings: list[str],
) -> None:
    # A stock key such as drain_timeout means what it meant unless the asqsd key it maps to is
    # set by any source (file, environment or flag): the explicit asqsd key is the newer intent.
    for target, (value, label) in fallbacks.items():
        if target in merged:
            warnings.append(f"{label}={value!r} is overridden by {target} (from {labels[target]})")
            continue
        merged[target] = value
        labels[target] = label


def _apply_inactivity_fallback(merged: dict[str, Any], labels: dict[str, str]) -> None:
    # Stock rule: a missing inactivity_timeout falls back to visibility_timeout. With neither set
    # the documented EB default (299) applies. An invalid visibility_timeout is reported once, by
    # its own key, so the fallback is skipped then; the copy is clamped to inactivity's range.
    if "inactivity_timeout" in merged or "visibility_timeout" not in merged:
        return
    try:
        visibility = int(merged["visibility_timeout"])
    except (TypeError, ValueError, OverflowError):
        return
    merged["inactivity_timeout"] = min(max(visibility, 1), 36000)
    labels["inactivity_timeout"] = f"{labels['visibility_timeout']} (fallback from visibility_timeout)"


def _file_layer(path: Path, warnings: list[str], unknown: list[tuple[str, str]]) -> _Layer:
    layer = _Layer()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot read: {exc.strerror or 'I/O error'}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config file {path}: cannot read: not UTF-8 text"]) from None
    import yaml  # only with a config file: a daemon configured by flags and env never pays for it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"config file {path}: invalid YAML: {_one_line(str(exc))}"]) from None
    except (ValueError, RecursionError) as exc:
        # PyYAML raises these for a date like 2001-13-01, a huge integer, or absurd nesting.
        raise ConfigError([f"config file {path}: invalid YAML value: {_one_line(str(exc))[:200]}"]) from None
    if data is None:
        return layer
    if not isinstance(data, dict):
        raise ConfigError([f"config file {path}: expected a mapping of keys, got {type(data).__name__}"])
    for raw_key, value in data.items():
        key = str(raw_key)
        target = EB_OPTION_NAMES.get(key) or STOCK_KEY_ALIASES.get(key, key)
        if key in STOCK_KEY_FALLBACKS:
            layer.fallbacks[STOCK_KEY_FALLBACKS[key]] = (value, f"file {path}: {key}")
        elif target in Settings.model_fields:
            layer.put(target, value, f"file {path}: {key}")
        elif key in STOCK_KEYS_IGNORED:
            warnings.append(f"config file {path}: stock key {key!r} is accepted but not used by asqsd")
        else:
            hint = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            unknown.append((f"config file {path}: unknown key {key!r}", suffix))
    return layer


def _env_layer(env: Mapping[str, str]) -> _Layer:
    layer = _Layer()
    for name in Settings.model_fields:
        var = ENV_PREFIX + name.upper()
        if var in env:
            layer.put(name, env[var], f"env {var}")
    return layer


def _eb_env_layer(env: Mapping[str, str]) -> _Layer:
    layer = _Layer()
    for option, name in EB_OPTION_NAMES.items():
        if option in env:
            layer.put(name, env[option], f"env {option}")
    return layer


def _cli_layer(cli: Mapping[str, Any]) -> _Layer:
    layer = _Layer()
    for name, value in cli.items():
        if value is not None:
            layer.put(name, value, f"flag --{name.replace('_', '-')}")
    return layer


def _describe(exc: ValidationError, merged: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    problems = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "settings"
        if key in merged:
            value = mask(key, merged[key])
            problems.append(f"{key}={value!r} (from {labels.get(key, 'default')}): {_message(error['msg'])}")
        else:
            problems.append(f"{key}: {_message(error['msg'])}")
    return problems


def _message(msg: str) -> str:
    """pydantic's message without its "Value error, " prefix: the validators' own words."""
    return msg.removeprefix("Value error, ")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def mask(key: str, value: Any) -> Any:
    """Hide secrets: keep a short prefix so two values can still be told apart."""
    if key in SECRET_KEYS and isinstance(value, str) and value:
        return value[:4] + "****"
    return value


def describe_settings(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """(key, effective value, source) rows for ``asqsd config``, secrets masked."""
    rows = []
    for name in Settings.model_fields:
        value = getattr(loaded.settings, name)
        if isinstance(value, frozenset):
            value = ",".join(str(v) for v in sorted(value))
        rows.append((name, str(mask(name, value)), loaded.sources.get(name, "default")))
    return rows


@dataclass(slots=True, frozen=True)
class WorkerHealthcheck:
    """The stock ``healthcheck`` key: ``TCP:<port>`` or ``HTTP:<port><path>`` (200 = healthy)."""

    kind: str  # "tcp" or "http"
    port: int
    path: str = "/"

    @classmethod
    def parse(cls, spec: str) -> WorkerHealthcheck:
        """Parse ``TCP:80`` / ``HTTP:80/health``; raises ValueError on anything else."""
        kind, sep, rest = spec.strip().partition(":")
        kind = kind.lower()
        if not sep or kind not in ("tcp", "http"):
            raise ValueError(f"healthcheck {spec!r}: expected TCP:<port> or HTTP:<port>/<path>")
        digits = rest.split("/", 1)[0]
        path = rest[len(digits) :] or "/"
        if not digits.isdigit() or not 1 <= int(digits) <= 65535:
            raise ValueError(f"healthcheck {spec!r}: bad port")
        if kind == "tcp" and path != "/":
            raise ValueError(f"healthcheck {spec!r}: TCP checks take no path")
        return cls(kind, int(digits), path)
