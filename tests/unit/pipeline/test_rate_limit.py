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
from tests.support.dynamo import ManualClock
from tests.support.polling import wait_until
from tests.unit.pipeline.test_receiver import ScriptedSQS, batch


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_starts_full_then_one_token_every_one_over_the_rate() -> None:
    """A full bucket lets ``burst`` POSTs through at once; after that a token is there every
    1/rate."""
    clock = FakeClock()
    bucket = TokenBucket(4, burst=3, clock=clock)
    for _ in range(3):
        assert bucket.wait_s() == 0
        bucket.take_now()
    assert bucket.wait_s() == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.wait_s() == 0
    bucket.take_now()
    assert bucket.level() == pytest.approx(0)


def test_refills_at_the_rate_and_saves_at_most_burst() -> None:
    """Tokens come back at the rate; an idle spell saves no more than ``burst``."""
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, clock=clock)
    bucket.take_now()
    bucket.take_now()
    clock.now += 0.15
    assert bucket.level() == pytest.approx(1.5)
    clock.now += 3600
    assert bucket.level() == 2.5  # burst 2 plus half a token of credit for a late taker
    for _ in range(2):
        bucket.take_now()
    assert bucket.wait_s() == pytest.approx(0.05)  # two at once, then the rate


@pytest.mark.parametrize("seed", range(12))
def test_no_one_second_window_holds_more_than_rate_plus_burst(seed: int) -> None:
    """Takers arrive at random times and take their tokens in turn, some of them late (a stalled
    event loop wakes them after their token was due): any window [t, t+1) still holds at most
    rate + burst POSTs, because a late taker takes its token when it POSTs, not when it was due."""
    rng = random.Random(seed)
    rate, burst = rng.choice([20.0, 14.5, 0.7]), rng.choice([1, 3, 10])
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock=clock)
    posts: list[float] = []
    for _ in range(400):
        clock.now += rng.choice([0.0, 0.0, 0.01, 0.2, 1.5]) * rng.random()  # the next arrival
        clock.now += bucket.wait_s()  # it waits for its token ...
        clock.now += rng.choice([0.0, 0.0, 0.0, 0.3]) * rng.random()  # ... and may wake up late
        bucket.take_now()
        posts.append(clock.now)
    widest = max(sum(1 for p in posts if start <= p < start + 1.0) for start in posts)
    assert widest <= rate + burst


async def test_takers_queue_in_turn_and_a_cancelled_one_takes_nothing() -> None:
    """Takers are served in the order they came, each once its token is there; one cancelled
    while waiting neither takes a token nor stays counted as waiting."""
    clock = ManualClock(100.0)
    bucket = TokenBucket(2, burst=1, clock=clock.time, sleep=clock.sleep)
    served: list[int] = []

    async def taker(n: int) -> None:
        await bucket.take()
        served.append(n)

    tasks = [asyncio.create_task(taker(n)) for n in range(4)]
    await wait_until(lambda: served == [0] and bucket.waiting == 3, what="the first served, three waiting")
    tasks[2].cancel()
    await wait_until(lambda: bucket.waiting == 2, what="the cancelled taker gone")
    await clock.advance(0.5)
    await wait_until(lambda: served == [0, 1], what="the second taker, half a second later")
    await clock.advance(0.5)
    await wait_until(lambda: served == [0, 1, 3] and bucket.waiting == 0, what="the last taker")
    assert bucket.level() == pytest.approx(0)


def test_receivable_is_what_passes_within_a_second_less_what_waits() -> None:
    """A receive may ask for the tokens of the next second (plus the saved ones) not already
    promised to waiting takers or to buffered messages; when it may ask for none, the wait
    before it looks again is bounded."""
    clock = FakeClock()
    bucket = TokenBucket(20, burst=1, clock=clock)
    assert bucket.receivable(0) == 21
    assert bucket.receivable(15) == 6
    assert bucket.receive_delay(15) == 0
    bucket.take_now()
    bucket.waiting = 10  # ten dispatchers wait for tokens (as take() counts them)
    assert bucket.receivable(0) == 10
    assert bucket.receivable(12) == -2
    assert bucket.receive_delay(12) == pytest.approx(3 / 20)
    slow = TokenBucket(0.01, burst=1, clock=clock)
    slow.take_now()
    assert slow.receive_delay(0) == 1.0  # looked at again every second, not one 100 s sleep


def test_rejects_a_rate_or_burst_that_passes_nothing() -> None:
    """Zero or negative rates and bursts are errors, not a daemon that never delivers."""
    with pytest.raises(ValueError, match="rate_per_s > 0"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="burst >= 1"):
        TokenBucket(1, 0)


async def test_receiver_asks_only_for_what_the_bucket_passes_soon() -> None:
    """With 2/s and burst 1 a receive asks for 3, not 10. While the dispatchers of those 3 wait
    for tokens the receiver does not poll; half a second later it asks for the one left."""
    clock = ManualClock(100.0)
    bucket = TokenBucket(2, burst=1, clock=clock.time, sleep=clock.sleep)
    channel = Channel(10)
    sqs = ScriptedSQS([batch(0, 3), batch(3, 1)])
    receiver = Receiver(
        0, sqs, channel, LeaseTable(), ReceivePolicy(20, 300), Counters(), lambda m: None, rate_limit=bucket
    )
    tasks = [asyncio.create_task(receiver.run())]
    try:
        for _ in range(3):
            await asyncio.wait_for(channel.get(), 2)
            tasks.append(asyncio.create_task(bucket.take()))  # what a dispatcher does before its POST
        await wait_until(lambda: bucket.waiting == 2, what="two dispatchers waiting for tokens")
        for _ in range(20):
            await asyncio.sleep(0)
        assert [call["max"] for call in sqs.calls] == [3]
        await clock.advance(0.5)
        await wait_until(lambda: len(sqs.calls) == 2, timeout_s=5, what="the second receive")
        assert [call["max"] for call in sqs.calls] == [3, 1]
    finally:
        for task in tasks:
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
