"""Every YAML file of the packaging (compose and deploy manifests) is found and parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.packaging.support import COMPOSE, K8S, ROOT, load_docs


def yaml_files() -> list[Path]:
    """Every YAML file of the packaging: compose and deploy manifests."""
    found = [*ROOT.joinpath("docker").rglob("*.y*ml"), *ROOT.joinpath("deploy").rglob("*.y*ml")]
    return sorted(p for p in found if p.suffix in (".yaml", ".yml"))


def test_there_are_yaml_files() -> None:
    """The compose file and the Kubernetes manifest are found by the glob below."""
    assert COMPOSE in yaml_files()
    assert K8S in yaml_files()


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    """Each YAML file parses (all documents) and each document is a mapping."""
    docs = load_docs(path)
    assert docs
    assert all(isinstance(doc, dict) for doc in docs)
