"""The intake gate: pause, resume, timed pauses, the longest-pause rule and the worker's header."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from asqsd.pipeline.intake import MAX_HEADER_PAUSE_S, IntakeGate, parse_pause_seconds


class FakeClock:
    """Monotonic and wall clock in one, moved by hand (the timer itself runs on the loop)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(enabled: bool = True) -> tuple[IntakeGate, FakeClock]:
    clock = FakeClock()
    return IntakeGate(enabled=enabled, clock=clock, wall_clock=clock), clock


async def timers_fired() -> None:
    """Return once every timed pause of 0.01 s started before this call has timed out: a
    reference gate's own timer, started last, fires after them."""
    reference = IntakeGate(enabled=True)
    reference.pause(0.01, "api")
    await asyncio.wait_for(reference.wait_open(), 2)


def events(logs: list[dict[str, object]]) -> list[object]:
    return [entry["event"] for entry in logs]


async def test_pause_closes_the_gate_and_resume_opens_it() -> None:
    """A receiver waiting on the gate is held while paused and let go by the resume."""
    intake, clock = gate()
    released = []
    intake.on_pause = lambda: released.append(True)
    state = intake.pause(None, "api")
    assert state.as_dict() == {
        "state": "paused",
        "since": 1000.0,
        "until": None,
        "source": "api",
        "changed": True,
    }
    assert intake.gauges() == {"intake_paused": 1, "intake_paused_since": 1000.0}
    assert released == [True]
    waiter = asyncio.create_task(intake.wait_open())
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.now = 1012.5
    with capture_logs() as logs:
        state = intake.resume("api")
    assert state.as_dict()["state"] == "running"
    await asyncio.wait_for(waiter, 1)
    assert intake.gauges() == {"intake_paused": 0, "intake_paused_since": 0.0}
    assert logs[0]["event"] == "intake-resumed" and logs[0]["paused_s"] == 12.5


async def test_resume_when_not_paused_changes_nothing_and_says_so() -> None:
    intake, _clock = gate()
    with capture_logs() as logs:
        state = intake.resume("api")
    assert state.as_dict()["changed"] is False
    assert events(logs) == ["intake-not-paused"]


async def test_pausing_twice_keeps_since_and_logs_the_repeat() -> None:
    """The second pause is reported as such; the pause started with the first one."""
    intake, clock = gate()
    intake.pause(None, "api")
    calls = []
    intake.on_pause = lambda: calls.append(1)
    clock.now += 30
    with capture_logs() as logs:
        state = intake.pause(None, "api")
    assert state.changed is False and state.since == 1000.0
    assert calls == []  # the buffer was released when the pause began, not again
    assert logs[0]["event"] == "intake-already-paused" and logs[0]["log_level"] == "info"
    assert logs[0]["extended"] is False


async def test_longest_timed_pause_wins() -> None:
    """A shorter pause never brings the end forward; a longer one moves it later."""
    intake, _clock = gate()
    intake.pause(100, "api")
    assert intake.state().until == 1100.0
    assert intake.pause(5, "api").changed is False
    assert intake.state().until == 1100.0
    assert intake.pause(200, "worker-header").changed is True
    assert intake.state().until == 1200.0
    intake.close()


async def test_a_timed_pause_resumes_by_itself() -> None:
    intake = IntakeGate(enabled=True)
    with capture_logs() as logs:
        intake.pause(0.01, "api")
        await asyncio.wait_for(intake.wait_open(), 2)
    assert not intake.paused
    assert events(logs) == ["intake-paused", "intake-resumed"]
    assert logs[-1]["source"] == "timer"


async def test_an_indefinite_pause_outlasts_a_timed_one() -> None:
    """Timed then indefinite, or indefinite then timed: paused until a resume either way."""
    intake = IntakeGate(enabled=True)
    intake.pause(0.01, "worker-header")
    intake.pause(None, "api")
    second = IntakeGate(enabled=True)
    second.pause(None, "api")
    second.pause(0.01, "worker-header")
    assert intake.state().until is None and second.state().until is None
    await timers_fired()
    assert intake.paused and second.paused
    intake.resume("api")
    second.resume("api")
    assert not intake.paused and not second.paused


async def test_resume_cancels_a_pending_timer() -> None:
    intake = IntakeGate(enabled=True)
    intake.pause(0.01, "api")
    intake.resume("api")
    intake.pause(None, "api")
    await timers_fired()
    assert intake.paused


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        (str(10 * MAX_HEADER_PAUSE_S), MAX_HEADER_PAUSE_S),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_pause_seconds(value: str, expected: float | None) -> None:
    assert parse_pause_seconds(value) == expected


async def test_header_pauses_for_its_seconds() -> None:
    intake, _clock = gate()
    intake.pause_from_header("30", "m1")
    assert intake.state().as_dict()["until"] == 1030.0
    assert intake.state().source == "worker-header"
    intake.close()


async def test_header_zero_does_not_pause() -> None:
    intake, _clock = gate()
    intake.pause_from_header("0", "m1")
    assert not intake.paused


async def test_garbage_header_is_logged_once_per_value_and_ignored() -> None:
    intake, _clock = gate()
    with capture_logs() as logs:
        for value in ("soon", "soon", "-3", "soon"):
            intake.pause_from_header(value, "m1")
    assert not intake.paused
    assert [(e["event"], e["value"]) for e in logs] == [
        ("pause-header-invalid", "soon"),
        ("pause-header-invalid", "-3"),
        ("pause-header-invalid", "soon"),
    ]


async def test_header_without_pause_control_is_ignored_with_one_line() -> None:
    intake, _clock = gate(enabled=False)
    with capture_logs() as logs:
        intake.pause_from_header("30", "m1")
        intake.pause_from_header("30", "m2")
    assert not intake.paused
    assert events(logs) == ["pause-header-ignored"]


async def test_repeated_header_pauses_log_at_debug() -> None:
    """Every in-flight answer may carry the header: the repeats must not flood the log."""
    intake, _clock = gate()
    intake.pause_from_header("30", "m1")
    with capture_logs() as logs:
        intake.pause_from_header("30", "m2")
    assert [(e["event"], e["log_level"]) for e in logs] == [("intake-already-paused", "debug")]
    intake.close()
