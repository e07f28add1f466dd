"""`asqsd local --demo`: the README's first command shows delivery, retry, a dead letter, a job
acknowledged asynchronously and an S3 payload resolved from its pointer."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_local_demo_shows_all_outcomes_and_stops_by_itself() -> None:
    """Runs the demo on a free port; it must finish on its own with exit 0 and say what it saw."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASQSD_", "AWS_ENDPOINT"))}
    result = subprocess.run(
        [sys.executable, "-m", "asqsd", "local", "--demo", "--port", "0", "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "SQS endpoint : http://127.0.0.1:" in out
    assert "aws --endpoint-url" in out
    assert "'flaky'" in out and "receive-count=1 → 500" in out and "receive-count=2 → 200" in out
    assert "'poison'" in out
    # The slow job: accepted with 202, deleted once its background task acknowledged done.
    assert "'slow'" in out and "receive-count=1 → 202" in out and "ack 'done' for msgid=" in out
    # The S3 pointer sample: the worker gets the payload from the emulator's S3, not the pointer.
    assert "'large' (2097181 bytes)" in out and "sent 'large' as its pointer" in out
    assert "demo complete" in out
    assert '"event": "stopped"' in result.stderr
    # Local mode: one settled line per delivered message at info (the default level), with the
    # outcome and the time the worker took; the poison message's last failure names the DLQ.
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    settled = [e for e in events if e["event"] == "settled"]
    assert settled and all(e["level"] == "info" and "elapsed_s" in e for e in settled)
    assert {"delete", "retry", "held"} <= {e["outcome"] for e in settled}
    assert any(e.get("detail") == "will be dead-lettered by SQS" for e in events if e["event"] == "http-err")
