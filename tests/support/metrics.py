"""Read a /metrics document the way a scraper does: through prometheus_client's own parsers."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

Sample = tuple[str, dict[str, str], float]


def parse_families(text: str, *, openmetrics: bool = False) -> dict[str, Metric]:
    """The families of a document (text 0.0.4, or OpenMetrics, whose parser is strict).

    Keyed by the name the text format's ``# TYPE`` line gives (``asqsd_messages_received_total``):
    the parsers drop a counter's ``_total`` (and OpenMetrics an info's ``_info``) from the family
    name, the samples keep it.
    """
    suffixes = {"counter": "_total", "info": "_info"}
    families: dict[str, Metric] = {}
    for family in (parse_openmetrics if openmetrics else parse_text)(text):
        name = family.name + suffixes.get(family.type, "")
        assert name not in families, f"family {name} twice"
        families[name] = family
    return families


def samples_of(families: dict[str, Metric], name: str) -> list[Sample]:
    """``(sample name, labels, value)`` of one family, in document order."""
    return [(s.name, s.labels, s.value) for s in families[name].samples]


def value_of(text: str, name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` with exactly ``labels`` in a text 0.0.4 document."""
    found = [
        s.value
        for family in parse_text(text)
        for s in family.samples
        if s.name == name and s.labels == labels
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]
