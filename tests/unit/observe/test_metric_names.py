"""The /metrics document follows the Prometheus naming rules (what ``promtool check metrics`` lints).

The rules, checked on the rendered text format of a daemon with every gauge known: each family has
one non-empty HELP and one TYPE; names are snake case with the ``asqsd_`` prefix (the library's
``process_*`` families aside); counters end in ``_total`` and nothing else does; no type word or
non-base unit in a name; histograms are in seconds or bytes; an info family is 1; every labelled
counter has a sample for each known label value from the start, and no label value nobody listed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import yaml

from asqsd.observe.counters import ASYNC_ACK_OUTCOMES, AWS_OPERATIONS, DEAD_LETTER_REASONS, Counters
from asqsd.observe.delivery import STATUS_CLASSES, DeliveryStats
from asqsd.observe.gauges import NAMED_GAUGES
from asqsd.observe.prometheus import metrics_registry, render_metrics
from tests.support.docs import ROOT, code_blocks, section
from tests.support.metrics import parse_families

# Every label asqsd uses and the values it may take ("le" is the histogram's own).
KNOWN_LABEL_VALUES: Mapping[str, frozenset[str]] = {
    "class": frozenset(STATUS_CLASSES),
    "outcome": frozenset({"success", "failure"}),
    "reason": frozenset(DEAD_LETTER_REASONS),
    "operation": frozenset(AWS_OPERATIONS),
    "state": frozenset({"visible", "in_flight", "delayed"}),
}
# Families whose label takes other values than the label's usual set.
FAMILY_LABEL_VALUES: Mapping[tuple[str, str], frozenset[str]] = {
    ("asqsd_async_acks", "outcome"): frozenset(ASYNC_ACK_OUTCOMES),
}
INFO_LABELS = frozenset({"version", "python"})


def known_values(family: str, label: str) -> frozenset[str]:
    """The values ``label`` may take on ``family`` (named without ``_total``)."""
    return FAMILY_LABEL_VALUES.get((family.removesuffix("_total"), label), KNOWN_LABEL_VALUES[label])


NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Type words and units that are not base units (milliseconds, kilobytes, percent ...).
FORBIDDEN_WORDS = frozenset(
    {"counter", "gauge", "histogram", "summary", "metric", "ms", "millis", "milliseconds", "minutes"}
    | {"hours", "days", "kb", "mb", "kilobytes", "megabytes", "percent", "bits"}
)
RESERVED_SUFFIXES = ("_count", "_sum", "_bucket", "_created")


class Source:
    """A daemon's view with every named gauge known (so each gauge family has a sample)."""

    counters = Counters()
    delivery = DeliveryStats()

    def gauges(self) -> Mapping[str, float]:
        return dict.fromkeys(NAMED_GAUGES, 0)


def document() -> str:
    body, _ = render_metrics(metrics_registry(Source()))
    return body.decode()


def metadata(text: str, kind: str) -> dict[str, list[str]]:
    """``# HELP`` or ``# TYPE`` lines: family name -> each text given (a list, to catch repeats)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(f"# {kind} "):
            name, _, rest = line[len(kind) + 3 :].partition(" ")
            found.setdefault(name, []).append(rest)
    return found


def test_every_family_has_one_help_and_one_type() -> None:
    """No family without HELP, none described twice, no empty description."""
    text = document()
    helps, types = metadata(text, "HELP"), metadata(text, "TYPE")
    assert set(helps) == set(types)
    assert {name for name, texts in helps.items() if len(texts) != 1} == set()
    assert {name for name, texts in types.items() if len(texts) != 1} == set()
    assert [name for name, (help_text,) in helps.items() if not help_text.strip()] == []


def test_names_are_prefixed_snake_case_without_type_words_or_non_base_units() -> None:
    """``asqsd_`` (or the standard ``process_``) snake case; no ``_ms``, ``_percent``, ``_gauge``."""
    types = metadata(document(), "TYPE")
    for name in types:
        assert NAME.match(name), name
        assert name.startswith(("asqsd_", "process_")), name
        assert not FORBIDDEN_WORDS & set(name.split("_")), name
        assert not name.endswith(RESERVED_SUFFIXES), name


def test_counters_and_only_counters_end_in_total() -> None:
    """A counter says it accumulates; a gauge or histogram never pretends to."""
    for name, (kind,) in metadata(document(), "TYPE").items():
        assert name.endswith("_total") == (kind == "counter"), (name, kind)


def test_histograms_have_a_base_unit_and_info_is_one() -> None:
    """Durations in seconds (or sizes in bytes); ``asqsd_build_info`` is a 1 carrying labels."""
    text = document()
    kinds = {name: kind for name, (kind,) in metadata(text, "TYPE").items()}
    histograms = [name for name, kind in kinds.items() if kind == "histogram"]
    assert histograms
    assert all(name.endswith(("_seconds", "_bytes")) for name in histograms), histograms
    info = parse_families(text)["asqsd_build_info"].samples
    assert [(s.value, set(s.labels)) for s in info] == [(1, INFO_LABELS)]


def test_labelled_counters_start_with_every_known_value_at_zero() -> None:
    """A fresh daemon already shows each class, outcome, reason and operation, all at 0."""
    for name, family in parse_families(document()).items():
        if family.type != "counter" or not family.samples or not family.samples[0].labels:
            continue
        (label,) = family.samples[0].labels
        values = {s.labels[label]: s.value for s in family.samples if s.name.endswith("_total")}
        assert values == dict.fromkeys(known_values(name, label), 0), name


def test_label_names_and_values_are_known() -> None:
    """Every label of an asqsd family is listed above, with a value it may take."""
    for name, family in parse_families(document()).items():
        if not name.startswith("asqsd_") or name == "asqsd_build_info":
            continue
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label == "le" and family.type == "histogram":
                    continue
                assert value in known_values(name, label), (sample.name, label, value)


# Renamed families (old -> new), as CHANGELOG.md lists them: no page may use an old name.
RENAMED = {
    "asqsd_messages_delivered_total": "asqsd_delivery_attempts_total",
    "asqsd_sqs_calls_total": "asqsd_aws_calls_total",
    "asqsd_sqs_errors_total": "asqsd_aws_call_failures_total",
    "asqsd_in_flight": "asqsd_worker_requests_in_flight",
    "asqsd_channel_depth": "asqsd_buffered_messages",
}
SERIES_SUFFIXES = re.compile(r"_(bucket|count|sum)$")


def test_documented_alerting_rules_use_exposed_names() -> None:
    """Every metric in the alerting rules of docs/observability.md is a family /metrics serves."""
    (rules,) = code_blocks(section("docs/observability.md", "### Prometheus alerting rules"), "yaml")
    exposed = set(metadata(document(), "TYPE"))
    exprs = [rule["expr"] for group in yaml.safe_load(rules)["groups"] for rule in group["rules"]]
    assert len(exprs) >= 5
    for expr in exprs:
        names = re.findall(r"\b(?:asqsd|process)_[a-z_]+", expr)
        assert names, expr
        for name in names:
            family = name if name in exposed else SERIES_SUFFIXES.sub("", name)
            assert family in exposed, (name, expr)


def test_no_page_uses_a_renamed_metric_and_the_changelog_lists_each() -> None:
    """Docs, the README and the deployment examples use the new names; the CHANGELOG maps old to new."""
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.md")]
    pages += [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    for page in pages:
        used = set(re.findall(r"\basqsd_[a-z_]+", page.read_text(errors="replace")))
        assert not used & set(RENAMED), (page.name, used & set(RENAMED))
    changelog = (ROOT / "CHANGELOG.md").read_text()
    exposed = set(metadata(document(), "TYPE"))
    for old, new in RENAMED.items():
        assert new in exposed
        assert re.search(rf"`{old}(\{{\w+\}})?` \| `{new}(\{{\w+\}})?`", changelog), old
