"""The rate limit's token bucket on a fake clock (no sleeping), a receiver that follows it, and
its settings."""

from __future__ import annotations

import asyncio
import random

import pytest

from asqsd.config import load_settings
from asqsd.errors import ConfigError
from asqsd.observe.counters import Counters
from asqsd.pipeline.channel import Channel
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.rate_limit import TokenBucket
from asqsd.pipeline.receiver import ReceivePolicy, Receiver
from tests.support.polling import wait_until
from tests.unit.pipeline.test_receiver import ScriptedSQS, batch


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_starts_full_then_spaces_takers_by_one_over_the_rate() -> None:
    """A full bucket lets ``burst`` POSTs through at once; the next takers are owed tokens and
    wait 1/rate, 2/rate ... in the order they came."""
    clock = FakeClock()
    bucket = TokenBucket(4, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(6)] == [0, 0, 0, 0.25, 0.5, 0.75]
    assert bucket.level() == -3


def test_refills_at_the_rate_and_saves_at_most_burst() -> None:
    """Owed tokens are paid back at the rate; an idle spell saves no more than ``burst``."""
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, clock=clock)
    for _ in range(4):
        bucket.reserve()
    assert bucket.level() == pytest.approx(-2)
    clock.now += 0.2
    assert bucket.level() == pytest.approx(0)
    clock.now += 3600
    assert bucket.level() == 2
    assert [bucket.reserve() for _ in range(3)] == [0, 0, pytest.approx(0.1)]


@pytest.mark.parametrize("seed", range(5))
def test_no_one_second_window_holds_more_than_rate_plus_burst(seed: int) -> None:
    """Takers arriving at random times POST when told to: any window [t, t+1) holds at most
    rate + burst POSTs, however the arrivals bunch up."""
    rng = random.Random(seed)
    rate, burst = 20.0, rng.choice([1, 3, 10])
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock)
    posts = []
    for _ in range(400):
        clock.now += rng.choice([0.0, 0.0, 0.01, 0.2, 1.5]) * rng.random()
        posts.append(clock.now + bucket.reserve())
    posts.sort()
    widest = max(sum(1 for p in posts if start <= p < start + 1.0) for start in posts)
    assert widest <= rate + burst


def test_receivable_is_what_passes_within_a_second_less_what_waits() -> None:
    """A receive may ask for the tokens of the next second (plus the saved ones) not already
    promised to buffered or owed messages; when it may ask for none, the wait is bounded."""
    clock = FakeClock()
    bucket = TokenBucket(20, burst=1, clock=clock)
    assert bucket.receivable(0) == 21
    assert bucket.receivable(15) == 6
    assert bucket.receive_delay(15) == 0
    for _ in range(11):
        bucket.reserve()  # ten dispatchers now wait for tokens
    assert bucket.receivable(0) == 10
    assert bucket.receivable(12) == -2
    assert bucket.receive_delay(12) == pytest.approx(3 / 20)
    slow = TokenBucket(0.01, burst=1, clock=clock)
    slow.reserve()
    assert slow.receive_delay(0) == 1.0  # re-checked every second, not one 100 s sleep


def test_rejects_a_rate_or_burst_that_passes_nothing() -> None:
    """Zero or negative rates and bursts are errors, not a daemon that never delivers."""
    with pytest.raises(ValueError, match="rate_per_s > 0"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="burst >= 1"):
        TokenBucket(1, 0)


async def test_receiver_asks_only_for_what_the_bucket_passes_soon() -> None:
    """With 2/s and burst 1 a receive asks for 3, not 10; while those 3 are buffered it does not
    poll again, and once they took their tokens and a second passed it asks for 2."""
    clock = FakeClock()
    bucket = TokenBucket(2, burst=1, clock=clock)
    channel = Channel(10)
    sqs = ScriptedSQS([batch(0, 3), batch(3, 2), batch(5, 1)])
    receiver = Receiver(
        0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None, rate_limit=bucket
    )
    task = asyncio.create_task(receiver.run())
    try:
        for _ in range(3):
            await asyncio.wait_for(channel.get(), 2)
            bucket.reserve()  # what a dispatcher does before its POST
        for _ in range(20):
            await asyncio.sleep(0)
        assert [call["max"] for call in sqs.calls] == [3]
        clock.now += 1.0  # the owed tokens are paid back: the next second's two may be received
        await wait_until(lambda: len(sqs.calls) == 2, timeout_s=5, what="the second receive")
        assert [call["max"] for call in sqs.calls] == [3, 2]
    finally:
        task.cancel()


def test_settings_off_by_default_and_checked() -> None:
    """Unset by default; a rate must be above 0 (fractions allowed); a burst needs a rate."""
    assert load_settings({}, {}).settings.max_messages_per_s is None
    loaded = load_settings({}, {"ASQSD_MAX_MESSAGES_PER_S": "0.5", "ASQSD_RATE_LIMIT_BURST": "3"})
    assert (loaded.settings.max_messages_per_s, loaded.settings.rate_limit_burst) == (0.5, 3)
    with pytest.raises(ConfigError, match=r"max_messages_per_s='0'.*greater than 0"):
        load_settings({"max_messages_per_s": "0"}, {})
    with pytest.raises(ConfigError, match=r"rate_limit_burst=0.*greater than or equal to 1"):
        load_settings({"max_messages_per_s": 5, "rate_limit_burst": 0}, {})
    with pytest.raises(ConfigError, match="rate_limit_burst needs max_messages_per_s"):
        load_settings({"rate_limit_burst": 5}, {})
