"""Bad input: every setting with wrong types and out-of-range values, malformed config files and
cron.yaml files. Each gives a clear error naming what is wrong (ConfigError / CronError), never
another exception and never a hang.

Inputs that crashed the first version (bugs found by this suite, now fixed) are at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest

from asqsd.config import ENV_PREFIX, Settings, load_settings
from asqsd.errors import ConfigError
from asqsd.periodic.cron_yaml import load_cron_file
from asqsd.periodic.schedule import CronError

FIELDS = list(Settings.model_fields)

# String settings that are validated, with values that are clearly wrong for them.
BAD_STRINGS: dict[str, list[str]] = {
    "queue_url": ["ftp://host/000000000000/q", "sqs.us-east-1.amazonaws.com/1/q", "jobs"],
    "http_url": [
        "ftp://localhost",
        "localhost",
        "http://",
        "http://h/path",
        "http://h?q=1",
        "http://h:99999",
    ],
    "http_path": ["jobs", "/a b", "/a\nb", "/a\x00", ""],
    "mime_type": ["", "text/plain\r\nX-Injected: 1", "\u2603", "a\x7fb"],
    "user_agent": ["", "agent\nX-Injected: 1", "\u00e9\u2603"],
    "endpoint_url": ["sqs.local", "http://h/p", "ftp://h", "http://[::1"],
    "dead_letter_queue_url": ["ftp://host/000000000000/dlq", "dlq", "http://h", "http://[::1"],
    "healthcheck": ["UDP:80", "HTTP:abc/", "TCP:70000", "TCP:", "HTTP:80noslash"],
    "request_signing_secret_env": ["", "my secret value", "1ABC", "A=B"],
    "worker_bearer_token_env": ["", "Bearer abc", "TOKEN-1"],
}
# Checked by a model validator (after the fields): the message names the key but not the source.
WHOLE_MODEL_CHECKS = frozenset({"queue_url"})
# String settings with no format of their own: only a wrong type is clearly wrong.
FREE_FORM_STRINGS = frozenset(
    {
        "registry_table",
        "dedup_table",
        "environment_name",
        "region",
        "cron_file",
        "emf_file",
        "emf_namespace",
        "fault_file",
        "stock_log_file",
        "health_host",
        "request_signing_secret_file",
        "worker_bearer_token_file",
    }
)


def _bounds(name: str) -> tuple[float | None, float | None]:
    low = high = None
    for item in Settings.model_fields[name].metadata:
        if isinstance(item, annotated_types.Ge):
            low = float(item.ge)  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Le):
            high = float(item.le)  # type: ignore[arg-type]
    return low, high


def _base_type(name: str) -> Any:
    annotation = Settings.model_fields[name].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def wrong_values(name: str) -> list[Any]:
    """Clearly wrong values for one setting, derived from its type and constraints."""
    base = _base_type(name)
    values: list[Any] = [{"nested": ["mapping"]}]
    if typing.get_origin(base) is typing.Literal:
        values += ["bogus", 3]
    elif base is bool:
        values += ["maybe", 2, "yes please"]
    elif base in (int, float):
        values += ["soon", "1 2", float("nan"), [1]]
        low, high = _bounds(name)
        step = 1 if base is int else 0.001
        if low is not None:
            values.append(int(low - 1) if base is int else low - step)
        if high is not None:
            values.append(int(high + 1) if base is int else high + step)
            values.append(10**30)
        if base is int:
            values.append(1.5)
    elif base is str:
        values += [12345, ["a"], *BAD_STRINGS.get(name, [])]
    elif typing.get_origin(base) is frozenset:
        values += ["", "abc", "99", "600", "2xx,1000", "300-200", [None], 700]
    return values


def test_every_setting_is_classified() -> None:
    """A new setting must get wrong values here: validated strings need a BAD_STRINGS entry."""
    for name in FIELDS:
        if _base_type(name) is str:
            assert name in BAD_STRINGS or name in FREE_FORM_STRINGS, f"classify the string setting {name}"


@pytest.mark.parametrize("name", FIELDS)
def test_wrong_values_are_config_errors_naming_the_key(name: str) -> None:
    """Each clearly wrong value of each setting is a ConfigError whose message names the key
    (and the value's source), never another exception."""
    for value in wrong_values(name):
        with pytest.raises(ConfigError) as info:
            load_settings({name: value}, env={})
        problems = info.value.problems
        assert any(name in p for p in problems), (name, value, problems)
        if name in WHOLE_MODEL_CHECKS and not isinstance(value, dict):
            continue
        assert any(p.startswith((f"{name}=", f"{name}:")) for p in problems), (name, value, problems)
        assert any(f"flag --{name.replace('_', '-')}" in p for p in problems), problems


def _string_wrong_values(name: str) -> list[str]:
    return [v for v in wrong_values(name) if isinstance(v, str)]


@pytest.mark.parametrize("name", [n for n in FIELDS if _string_wrong_values(n)])
def test_wrong_values_from_the_environment(name: str) -> None:
    """The same through ``ASQSD_<KEY>`` (always a string): the message names the variable.
    (Free-form string settings take any string, so they have no wrong value here.)"""
    strings = _string_wrong_values(name)
    var = ENV_PREFIX + name.upper()
    for value in strings:
        with pytest.raises(ConfigError) as info:
            load_settings({}, env={var: value})
        expected = name if name in WHOLE_MODEL_CHECKS else f"env {var}"
        assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("name", FIELDS)
def test_wrong_values_from_a_config_file(name: str, tmp_path: Path) -> None:
    """The same from a YAML file: the message names the file and the key."""
    import yaml

    path = tmp_path / "default.yaml"
    for value in wrong_values(name):
        if isinstance(value, float) and value != value:  # NaN: YAML writes .nan, fine, but skip dup
            continue
        path.write_text(yaml.safe_dump({name: value}))
        with pytest.raises(ConfigError) as info:
            load_settings({}, env={}, config_file=path)
        expected = name if name in WHOLE_MODEL_CHECKS and isinstance(value, str) else f"file {path}: {name}"
        assert any(expected in p for p in info.value.problems), (value, info.value.problems)


def test_all_problems_reported_at_once() -> None:
    """Several wrong settings: one line per problem, all of them."""
    values = {name: {"nested": 1} for name in FIELDS}
    with pytest.raises(ConfigError) as info:
        load_settings(values, env={})
    named = {p.split("=", 1)[0].split(":", 1)[0] for p in info.value.problems}
    assert named >= set(FIELDS) - {"health_host"}


MALFORMED_CONFIG_FILES: list[tuple[str, bytes]] = [
    ("unclosed-flow", b"http_port: [1, 2\n"),
    ("tab-indent", b"http_port: 80\n\thttp_path: /x\n"),
    ("bad-indent", b"a:\n  b: 1\n c: 2\n"),
    ("top-level-list", b"- http_port: 80\n"),
    ("top-level-scalar", b"just some text\n"),
    ("top-level-int", b"42\n"),
    ("python-tag", b"http_port: !!python/object/apply:os.system ['true']\n"),
    ("unknown-tag", b"http_port: !custom 80\n"),
    ("unhashable-key", b"[1, 2]: 3\n"),
    ("duplicate-anchor-alias", b"a: *missing\n"),
    ("not-utf8", b"http_path: /\xff\xfe\n"),
    ("nul-bytes", b"http_port: 80\x00\n"),
    ("unterminated-string", b'http_path: "/jobs\n'),
    ("document-separator-only", b"---\n...\n"),
    ("many-documents", b"http_port: 80\n---\nhttp_port: 81\n"),
    ("bom-then-garbage", b"\xef\xbb\xbf: : :\n"),
]


@pytest.mark.parametrize(
    ("label", "content"), MALFORMED_CONFIG_FILES, ids=[c[0] for c in MALFORMED_CONFIG_FILES]
)
def test_malformed_config_files(label: str, content: bytes, tmp_path: Path) -> None:
    """A malformed YAML config file is a ConfigError naming the file (or, where the YAML is
    fine, loads with warnings only), never another exception."""
    path = tmp_path / f"{label}.yaml"
    path.write_bytes(content)
    try:
        loaded = load_settings({}, env={}, config_file=path)
    except ConfigError as exc:
        assert all(str(path) in p for p in exc.problems), exc.problems
    else:
        assert loaded.settings.http_port in (80, 81) or label == "document-separator-only", label


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    """A directory instead of a file: ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={}, config_file=tmp_path)
    assert str(tmp_path) in str(info.value)


MALFORMED_CRON_FILES: list[tuple[str, bytes]] = [
    ("binary", b"\x00\x01\x02\xff"),
    ("not-utf8", b"version: 1\ncron:\n - name: \xff\n"),
    ("list", b"- a\n- b\n"),
    ("scalar", b"cron\n"),
    ("bad-yaml", b"version: 1\ncron: [\n"),
    ("deep", b"version: 1\ncron: " + b"[" * 3000 + b"]" * 3000 + b"\n"),
    ("huge-int", b"version: " + b"9" * 5000 + b"\ncron: []\n"),
    ("python-tag", b"version: 1\ncron: !!python/object/apply:os.system ['true']\n"),
    ("schedule-out-of-range", b"version: 1\ncron:\n - {name: a, url: /a, schedule: '61 * * * *'}\n"),
    ("schedule-seven-fields", b"version: 1\ncron:\n - {name: a, url: /a, schedule: '* * * * * * *'}\n"),
    ("schedule-never", b"version: 1\ncron:\n - {name: a, url: /a, schedule: '0 0 31 2 *'}\n"),
    ("url-crlf", b'version: 1\ncron:\n - {name: a, url: "/a\\r\\nX: 1", schedule: "@daily"}\n'),
    ("url-absolute", b"version: 1\ncron:\n - {name: a, url: 'http://evil/', schedule: '@daily'}\n"),
    ("url-relative", b"version: 1\ncron:\n - {name: a, url: 'jobs', schedule: '@daily'}\n"),
    ("name-control", b'version: 1\ncron:\n - {name: "a\\u0000", url: /a, schedule: "@daily"}\n'),
    ("entry-list", b"version: 1\ncron:\n - [name, url]\n"),
    ("version-string", b"version: 'one'\ncron: []\n"),
    ("too-big", b"version: 1\n# " + b"x" * (2 * 1024 * 1024) + b"\ncron: []\n"),
]


@pytest.mark.parametrize(("label", "content"), MALFORMED_CRON_FILES, ids=[c[0] for c in MALFORMED_CRON_FILES])
def test_malformed_cron_files(label: str, content: bytes, tmp_path: Path) -> None:
    """Every malformed cron.yaml is a CronError naming the file, never another exception."""
    path = tmp_path / "cron.yaml"
    path.write_bytes(content)
    with pytest.raises(CronError) as info:
        load_cron_file(path)
    assert all(str(path) in p for p in info.value.problems), (label, info.value.problems)


# --- inputs that crashed the first version (fixed; these tests keep them fixed) ----------------


@pytest.mark.parametrize("text", ["visibility_timeout: .inf\n", "VisibilityTimeout: -.inf\n"])
def test_infinite_visibility_timeout_in_a_file(text: str, tmp_path: Path) -> None:
    """``visibility_timeout: .inf`` is a ConfigError naming the key."""
    path = tmp_path / "default.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={}, config_file=path)
    assert "visibility_timeout" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        b"http_path: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        b"http_port: " + b"9" * 5000 + b"\n",
        b"visibility_timeout: 2001-13-01\n",
    ],
    ids=["deep-nesting", "5000-digit-int", "impossible-date"],
)
def test_pathological_yaml_config_files(content: bytes, tmp_path: Path) -> None:
    """Pathological YAML is a ConfigError naming the file."""
    path = tmp_path / "default.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings({}, env={}, config_file=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("region", ["us east 1", "us-east-1\n", "../../etc"])
def test_malformed_region(region: str) -> None:
    """A region botocore would refuse is a ConfigError naming ``region``."""
    with pytest.raises(ConfigError) as info:
        load_settings({"region": region}, env={})
    assert "region" in str(info.value)


_HUGE_RANGE_PROBE = """
import resource, sys
from asqsd.config import load_settings
from asqsd.errors import ConfigError
with open("/proc/self/status") as status:
    size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
limit = (size_kb + 256 * 1024) * 1024  # 256 MiB more than after the imports
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    load_settings({"success_statuses": sys.argv[1]}, env={})
except ConfigError as exc:
    print("CONFIG-ERROR", exc.problems[0][:200])
"""


def test_huge_status_range_is_refused_without_allocating() -> None:
    """``success_statuses: 100-99999999999`` is a ConfigError, in bounded memory and time.

    Run in a child with an address-space limit so the bug cannot exhaust the test machine."""
    result = subprocess.run(
        [sys.executable, "-c", _HUGE_RANGE_PROBE, "100-99999999999"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert "CONFIG-ERROR success_statuses=" in result.stdout, result.stderr[-500:]
