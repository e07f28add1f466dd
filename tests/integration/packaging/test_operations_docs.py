"""The operations docs (deployment, migrating): links resolve, env names and flags are real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from asqsd.config import Settings
from tests.integration.packaging.support import ROOT, assert_real_settings

DOCS = [ROOT / "docs" / "deployment.md", ROOT / "docs" / "migrating.md"]
# Named in the docs and read by the Dockerfile's health check before the health endpoint's own
# setting exists; checked like any other name as soon as ``health_port`` is a Settings field.
PENDING_ENV = {"ASQSD_HEALTH_PORT": "health_port"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_relative_links_resolve(doc: Path) -> None:
    """Every relative Markdown link of the operations docs points at an existing file."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t]
    assert local
    missing = [t for t in local if not (doc.parent / t).exists()]
    assert not missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_env_names_are_settings(doc: Path) -> None:
    """Every ``ASQSD_<KEY>`` the docs name is a real setting."""
    names = set(re.findall(r"\bASQSD_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text(encoding="utf-8")))
    pending = {n for n, field in PENDING_ENV.items() if field not in Settings.model_fields}
    assert_real_settings(dict.fromkeys(names - pending, ""))


def test_migrating_table_flags_are_run_flags() -> None:
    """Every ``--flag`` in the migration tables is an option of ``asqsd run``."""
    text = (ROOT / "docs" / "migrating.md").read_text(encoding="utf-8")
    rows = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rows))
    assert flags
    done = subprocess.run(
        [sys.executable, "-m", "asqsd", "run", "--help"], capture_output=True, text=True, timeout=60
    )
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))
    assert flags <= known, sorted(flags - known)
