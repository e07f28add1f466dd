"""The packaging files as parsed documents: docker/compose.yaml and the Kubernetes manifest."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.packaging.support import COMPOSE, K8S, load_docs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yaml, with YAML merge keys resolved."""
    (doc,) = load_docs(COMPOSE)
    return doc  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    """The manifest's objects by kind (one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for doc in load_docs(K8S):
        assert doc["kind"] not in objects, f"two {doc['kind']} objects"
        objects[doc["kind"]] = doc
    return objects
