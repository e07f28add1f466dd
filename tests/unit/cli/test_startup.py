"""The entry point's start-up settings: a collection pause it alone ends, and pydantic plugins off
only while asqsd's models are built (asqsd.cli.startup)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from asqsd.cli.startup import CollectionPause, pydantic_plugins_off


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a test does to the collector is undone: enabled, nothing left frozen."""
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


@pytest.mark.usefixtures("collector")
def test_resume_freezes_what_start_up_made_and_collects_again() -> None:
    pause = CollectionPause()
    pause.pause()
    assert not gc.isenabled()
    made_at_start = [[] for _ in range(1000)]
    pause.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made_at_start)
    frozen = gc.get_freeze_count()
    pause.resume()  # once only
    assert gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("collector")
def test_resume_leaves_a_collector_it_did_not_pause_alone() -> None:
    gc.disable()  # someone else's choice (a test, an embedding application)
    pause = CollectionPause()
    pause.pause()
    pause.resume()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_pydantic_plugins_are_off_inside_the_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    with pydantic_plugins_off():
        assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ  # no child process inherits it


def test_a_users_pydantic_plugins_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "logfire")
    with pydantic_plugins_off():
        assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "logfire"
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "logfire"
