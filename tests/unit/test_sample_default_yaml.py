"""docs/sample-default.yaml, the sample stock config file, loads as its comments say it does.

As shipped: no warning, and every value is the one the comment gives. With the last block
uncommented: one "accepted but not used" warning per stock key asqsd ignores, for every such key,
and nothing unknown. So the sample cannot drift from what asqsd reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from asqsd.config import STOCK_KEYS_IGNORED, load_settings
from tests.support.docs import ROOT

SAMPLE = ROOT / "docs" / "sample-default.yaml"
IGNORED_BLOCK = "# --- Stock keys asqsd accepts but does not use"


def test_the_sample_loads_without_a_warning_at_elastic_beanstalks_defaults() -> None:
    """Every key is read, none is unknown, and the values are Elastic Beanstalk's defaults."""
    loaded = load_settings(env={}, config_file=SAMPLE, strict=True)
    assert loaded.warnings == []
    s = loaded.settings
    assert s.queue_url == "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    assert (s.http_path, s.mime_type, s.http_connections) == ("/", "application/json", 50)
    assert (s.connect_timeout, s.inactivity_timeout, s.visibility_timeout) == (5, 299, 300)
    assert (s.error_visibility_timeout, s.retention_period) == (2, 345600)
    assert (s.environment_name, s.worker_url, s.healthcheck) == ("my-env", "http://localhost:80", "TCP:80")
    assert (s.cloudwatch_interval_s, s.unwrap_sns, s.dedup) == (60, False, False)
    assert s.registry_table is not None and "AWSEBWorkerCronLeaderRegistry" in s.registry_table
    assert all(loaded.sources[key].startswith(f"file {SAMPLE}") for key in ("queue_url", "http_port"))


def test_every_ignored_stock_key_is_in_the_sample_and_only_warns(tmp_path: Path) -> None:
    """Uncommented, the last block gives one warning per key, and covers every ignored key."""
    head, block = SAMPLE.read_text().split(IGNORED_BLOCK)
    uncommented = tmp_path / "default.yaml"
    uncommented.write_text(head + re.sub(r"^# ", "", block.split("\n", 1)[1], flags=re.MULTILINE))
    loaded = load_settings(env={}, config_file=uncommented, strict=True)
    warned = re.findall(r"stock key '(\w+)' is accepted but not used", "\n".join(loaded.warnings))
    assert len(warned) == len(loaded.warnings) == len(set(warned))
    assert set(warned) == STOCK_KEYS_IGNORED
