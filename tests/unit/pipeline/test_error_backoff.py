"""error_backoff "exponential": the visibility delay :func:`decide` picks after a failed delivery."""

from __future__ import annotations

import random
import statistics

from hypothesis import assume, given
from hypothesis import strategies as st

from asqsd.clients.worker.base import DeliveryResult
from asqsd.message import Outcome
from asqsd.pipeline.dispatcher import VISIBILITY_LIMIT_S, Attempt, DeliveryPolicy, decide

FAILED = DeliveryResult(500, None, 0.1)


def policy(base: int | None = 2, cap: int = VISIBILITY_LIMIT_S, *, on: bool = True) -> DeliveryPolicy:
    return DeliveryPolicy(frozenset({200}), base, 60, 43200, error_backoff=on, error_backoff_max_s=cap)


def delay(
    p: DeliveryPolicy, receive_count: int, held_s: float = 0.0, seed: int = 0, result: DeliveryResult = FAILED
) -> int | None:
    outcome, seconds = decide(result, p, Attempt(receive_count, held_s), random.Random(seed))
    assert outcome is (Outcome.LEAVE if seconds is None else Outcome.RETRY)
    return seconds


@given(
    base=st.integers(0, 600),
    cap=st.integers(0, VISIBILITY_LIMIT_S),
    receive_count=st.integers(0, 200),
    seed=st.integers(0, 2**32),
)
def test_delay_keeps_half_of_the_doubled_base_within_the_cap(
    base: int, cap: int, receive_count: int, seed: int
) -> None:
    """Receive count n: ceiling d = min(cap, base * 2**(n-1)); the delay is in [d/2, d], whole
    seconds rounded up, and never above the cap. An unknown count (0) is the first receive."""
    got = delay(policy(base, cap), receive_count, seed=seed)
    assert got is not None
    ceiling = min(cap, base * 2 ** min(max(receive_count, 1) - 1, 40))
    assert ceiling / 2 <= got <= ceiling, (ceiling, got)


@given(base=st.integers(1, 60), receive_count=st.integers(1, 12))
def test_delays_grow_from_one_receive_to_the_next(base: int, receive_count: int) -> None:
    """Below the cap, every possible delay of receive n+1 is at least every possible delay of
    receive n (the jitter ranges [d/2, d] and [d, 2d] only touch), and the mean doubles."""
    assume(base * 2**receive_count <= VISIBILITY_LIMIT_S)  # receive n+1 still below the cap
    p = policy(base)
    now = [delay(p, receive_count, seed=s) or 0 for s in range(200)]
    after = [delay(p, receive_count + 1, seed=s) or 0 for s in range(200)]
    assert max(now) <= min(after)
    assert statistics.mean(after) >= 1.5 * statistics.mean(now)


@given(held_s=st.floats(0, 2 * VISIBILITY_LIMIT_S), receive_count=st.integers(1, 40))
def test_never_past_the_12_hour_limit_of_the_receive(held_s: float, receive_count: int) -> None:
    """SQS refuses a visibility that ends more than 12 h after the receive: the delay stops there."""
    got = delay(policy(600), receive_count, held_s=held_s)
    assert got is not None
    assert held_s + got <= VISIBILITY_LIMIT_S or got == 0


def test_12_hour_limit_examples() -> None:
    """11 h 59 min held: at most the 60 s left; past 12 h: 0 (SQS would refuse anything more)."""
    assert delay(policy(3600), 20, held_s=VISIBILITY_LIMIT_S - 60) == 60
    assert delay(policy(3600), 20, held_s=VISIBILITY_LIMIT_S + 5) == 0


@given(
    retry_after=st.integers(0, VISIBILITY_LIMIT_S),
    receive_count=st.integers(1, 30),
    status=st.sampled_from([429, 503]),
)
def test_retry_after_wins(retry_after: int, receive_count: int, status: int) -> None:
    """A worker's Retry-After is the delay, whatever the receive count (capped by retry_after_max_s)."""
    result = DeliveryResult(status, None, 0.1, retry_after_s=retry_after)
    assert delay(policy(5), receive_count, result=result) == retry_after


def test_off_is_the_stock_fixed_delay() -> None:
    """error_backoff off (the default): error_visibility_timeout whatever the receive count."""
    assert DeliveryPolicy(frozenset({200}), 2, 60, 43200).error_backoff is False
    assert [delay(policy(2, on=False), n) for n in (1, 2, 5, 30)] == [2, 2, 2, 2]


def test_no_error_visibility_leaves_the_message_alone() -> None:
    """error_visibility_timeout null: no visibility change, backoff or not (stock)."""
    assert delay(policy(None), 4) is None


def test_success_is_deleted() -> None:
    outcome, seconds = decide(DeliveryResult(200, None, 0.1), policy(2), Attempt(5), random.Random(1))
    assert (outcome, seconds) == (Outcome.DELETE, None)


def test_the_sequence_for_base_1() -> None:
    """base 1 s, cap 10 s: 1, 1-2, 2-4, 4-8, then 5-10 s."""
    p = policy(1, 10)
    for seed in range(50):
        got = [delay(p, n, seed=seed) or 0 for n in range(1, 7)]
        assert got[0] == 1
        assert 1 <= got[1] <= 2 and 2 <= got[2] <= 4 and 4 <= got[3] <= 8
        assert all(5 <= g <= 10 for g in got[4:])
