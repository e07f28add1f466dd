"""The one retry-pause formula: backoff_delay (pure) and Backoff (counts the failures itself)."""

from __future__ import annotations

import random
import types

import pytest

import asqsd.backoff as backoff_module
from asqsd.backoff import Backoff, backoff_delay


def test_without_jitter_the_pause_doubles_up_to_the_cap() -> None:
    """jitter=0: base, 2*base, ... cap, and the generator is not consulted."""
    rng = random.Random(1)
    state = rng.getstate()
    assert [backoff_delay(n, 0.5, 20.0, rng, jitter=0.0) for n in range(8)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0,
    ]  # fmt: skip
    assert rng.getstate() == state
    backoff = Backoff(base_s=0.5, cap_s=20.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_half_jitter_keeps_at_least_half_the_ceiling() -> None:
    rng = random.Random(2)
    for attempt in range(40):
        ceiling = min(60.0, 5.0 * 2**attempt)
        assert ceiling / 2 <= backoff_delay(attempt, 5.0, 60.0, rng, jitter=0.5) <= ceiling


def test_full_jitter_has_a_floor_of_a_tenth_of_the_base() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(attempt, 1.0, 8.0, rng) for attempt in range(200)]
    assert all(0.1 <= d <= 8.0 for d in delays)
    assert min(delays) < 1.0 < max(delays)


def test_huge_attempt_counts_stay_finite() -> None:
    assert backoff_delay(10_000, 0.2, 30.0, random.Random(4), jitter=0.0) == 30.0


def test_backoff_is_the_pure_formula_over_its_own_count() -> None:
    """Same seed, same pauses: Backoff adds only the counting (and reset)."""
    backoff = Backoff(base_s=0.2, cap_s=5.0, rng=random.Random(5))
    rng = random.Random(5)
    assert [backoff.next_delay() for _ in range(12)] == [backoff_delay(n, 0.2, 5.0, rng) for n in range(12)]
    assert backoff.attempt == 12
    backoff.reset()
    assert backoff.attempt == 0


def test_jitter_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)


def test_the_random_generator_is_made_at_the_first_delay_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeding one reads the OS's entropy; a Backoff per batch call that never fails must not pay it."""
    made: list[random.Random] = []

    def counting_random() -> random.Random:
        made.append(random.Random(7))
        return made[-1]

    monkeypatch.setattr(backoff_module, "random", types.SimpleNamespace(Random=counting_random))
    backoffs = [Backoff(base_s=0.1, cap_s=5.0) for _ in range(3)]
    assert made == []
    first = backoffs[0].next_delay()
    backoffs[0].next_delay()
    assert len(made) == 1
    assert 0.01 <= first <= 0.1
