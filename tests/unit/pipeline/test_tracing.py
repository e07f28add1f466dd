"""``otel_tracing`` without a daemon: the X-Ray mapping, the refusal when OpenTelemetry is missing,
and no OpenTelemetry import at all when the setting is off."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from asqsd.config import load_settings
from asqsd.daemon import Daemon
from asqsd.errors import StartupError
from asqsd.pipeline.tracing import xray_span_context


def settings(**values: Any) -> Any:
    return load_settings({"queue_url": "http://127.0.0.1:1/1/q", **values}, env={}).settings


def test_xray_header_maps_like_the_xray_propagator() -> None:
    """Trace id = epoch + unique id; span id = Parent; Sampled=1 → sampled."""
    context = xray_span_context("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    assert context is not None
    assert context.trace_id == 0x5759E988BD862E3FE1BE46A994272793
    assert context.span_id == 0x53995C3F42CD8AD8
    assert context.trace_flags.sampled and context.is_remote
    unsampled = xray_span_context("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8")
    assert unsampled is not None and not unsampled.trace_flags.sampled


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Root=1-5759e988-bd862e3fe1be46a994272793",  # no Parent: nothing to be a child of
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995C3F42CD8AD8",  # upper case
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f",
        "Root=garbage;Parent=53995c3f42cd8ad8",
    ],
)
def test_unusable_xray_headers_give_no_context(header: str | None) -> None:
    """Without a valid Root and a 16-hex-digit Parent there is no producer context."""
    assert xray_span_context(header) is None


def test_missing_opentelemetry_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """otel_tracing on without the package: a StartupError that says what to install."""
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "asqsd.pipeline.tracing")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # makes `import opentelemetry` fail
    with pytest.raises(StartupError, match="install asqsd with its otel extra"):
        Daemon(settings(otel_tracing=True))


def test_off_imports_no_opentelemetry() -> None:
    """With otel_tracing off (the default) building a daemon imports neither OpenTelemetry nor
    the tracing module."""
    code = (
        "import sys\n"
        "from asqsd.config import load_settings\n"
        "from asqsd.daemon import Daemon\n"
        "Daemon(load_settings({'queue_url': 'http://127.0.0.1:1/1/q'}, env={}).settings)\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry', 'asqsd.pipeline.tracing'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
