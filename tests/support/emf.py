"""A field-by-field check of CloudWatch Embedded Metric Format lines against the specification.

Checked: the root is a JSON object with ``_aws``; ``_aws.Timestamp`` is an integer of epoch
milliseconds; ``CloudWatchMetrics`` is a non-empty list of directives with a ``Namespace``
string, ``Dimensions`` (a list of lists of at most 30 strings each) and ``Metrics`` (1..100
definitions with a ``Name`` and, if present, a ``Unit`` of the allowed set); every dimension and
metric name is a top-level member; dimension values are strings; metric values are numbers or
non-empty arrays of at most 100 numbers; the line stays under the CloudWatch Logs event limit.
"""

from __future__ import annotations

import json
from typing import Any

# The Unit values of the CloudWatch MetricDatum / EMF MetricDefinition.
ALLOWED_UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
EVENT_LIMIT_BYTES = 256 * 1024 - 26  # 256 KiB per event, 26 bytes of it overhead


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_emf_line(line: str) -> dict[str, Any]:
    """Assert ``line`` is a valid EMF document; return it parsed."""
    assert "\n" not in line, "one document per line"
    assert len(line.encode()) <= EVENT_LIMIT_BYTES, "larger than a CloudWatch Logs event"
    document = json.loads(line)
    assert isinstance(document, dict)
    aws = document["_aws"]
    assert isinstance(aws, dict)
    timestamp = aws["Timestamp"]
    assert isinstance(timestamp, int) and not isinstance(timestamp, bool)
    assert 1_500_000_000_000 < timestamp < 5_000_000_000_000, "epoch milliseconds"
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        _check_directive(directive, document)
    return document


def _check_directive(directive: Any, document: dict[str, Any]) -> None:
    assert isinstance(directive, dict)
    assert set(directive) <= {"Namespace", "Dimensions", "Metrics"}
    namespace = directive["Namespace"]
    assert isinstance(namespace, str) and 1 <= len(namespace) <= 255
    dimension_sets = directive["Dimensions"]
    assert isinstance(dimension_sets, list)
    for dimension_set in dimension_sets:
        assert isinstance(dimension_set, list) and 1 <= len(dimension_set) <= 30
        for name in dimension_set:
            assert isinstance(name, str) and name
            assert isinstance(document[name], str), f"dimension {name} is a top-level string"
    metrics = directive["Metrics"]
    assert isinstance(metrics, list) and 1 <= len(metrics) <= 100
    for metric in metrics:
        assert isinstance(metric, dict) and set(metric) <= {"Name", "Unit", "StorageResolution"}
        name = metric["Name"]
        assert isinstance(name, str) and 1 <= len(name) <= 255
        assert metric.get("Unit", "None") in ALLOWED_UNITS
        value = document[name]  # every metric is a top-level member
        if isinstance(value, list):
            assert 1 <= len(value) <= 100 and all(_is_number(v) for v in value)
        else:
            assert _is_number(value)
