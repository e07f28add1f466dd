"""docker/sample_worker/app.py as a subprocess: answers, logs, status from the environment."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.integration.packaging.support import SAMPLE_WORKER, clean_env, log_events, stop
from tests.support.servers import free_loopback_port, wait_http


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


def post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
    """POST and return (status, headers), HTTP errors included."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


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
