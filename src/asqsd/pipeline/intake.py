"""The intake gate: pause and resume receiving without stopping the daemon (``pause_control``).

Receivers wait on the gate before every ReceiveMessage, so a pause stops receiving at once; an
outstanding long poll is let finish (cancelling it could hide a message for a whole visibility
timeout) and what it returns is released (visibility 0). At the moment of the pause the pipeline
also releases what is buffered and unstarted; POSTs in progress finish and settle as usual, so a
paused daemon soon holds nothing.

A pause comes from the health server (``POST /pause``, ``asqsd pause``), indefinite or timed, or
from a worker's ``X-Asqsd-Pause-Seconds`` response header (timed). The rule when pauses overlap:
the longest outstanding pause wins. An indefinite pause lasts until a resume; a timed pause only
ever moves the end later, never earlier. A resume ends every pause at once, timed or not.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from asqsd.clients.worker.base import PAUSE_HEADER
from asqsd.logs import get_logger
from asqsd.observe.gauges import INTAKE_PAUSED, INTAKE_PAUSED_SINCE

log = get_logger("intake")

# A worker's header pauses intake at most this long: a typo such as "36000" must not stop a
# daemon for ten hours without an operator asking for it (a longer pause goes through the API).
MAX_HEADER_PAUSE_S = 3600.0

# How much of a garbage header value goes into the log line.
_SHOWN_CHARS = 40


@dataclass(slots=True, frozen=True)
class IntakeState:
    """What the gate says about itself: for ``/pause``, ``/resume``, ``/readyz`` and the CLI.

    ``since`` and ``until`` are unix times (``until`` None: until a resume); ``changed`` tells
    whether the request that produced this state changed anything.
    """

    paused: bool
    since: float | None = None
    until: float | None = None
    source: str | None = None
    changed: bool = True

    def as_dict(self) -> dict[str, object]:
        """The JSON body of the control endpoints."""
        return {
            "state": "paused" if self.paused else "running",
            "since": self.since,
            "until": self.until,
            "source": self.source,
            "changed": self.changed,
        }


def parse_pause_seconds(value: str) -> float | None:
    """The header's seconds (a non-negative decimal number, capped at :data:`MAX_HEADER_PAUSE_S`);
    None when it is not one."""
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_HEADER_PAUSE_S)


class IntakeGate:
    """Whether receivers may receive; see the module docstring for the rules.

    ``enabled`` is the ``pause_control`` setting: when off, every pause request is refused (the
    header is ignored with one log line). ``on_pause`` is called synchronously when a pause
    starts (the pipeline releases its buffered messages there).
    """

    def __init__(
        self,
        *,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self._clock = clock
        self._wall_clock = wall_clock
        self._open = asyncio.Event()
        self._open.set()
        self._indefinite = False
        self._until: float | None = None  # monotonic end of the timed pause, if any
        self._since: float | None = None  # unix time the current pause began
        self._source: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._bad_header: str | None = None  # the last garbage value logged (logged once each)
        self._header_ignored_logged = False
        self.on_pause: Callable[[], None] | None = None

    @property
    def paused(self) -> bool:
        """True while receiving is paused."""
        return not self._open.is_set()

    async def wait_open(self) -> None:
        """Return once intake is not paused (at once when it is not)."""
        await self._open.wait()

    def state(self, changed: bool = True) -> IntakeState:
        """The current state."""
        if not self.paused:
            return IntakeState(False, changed=changed)
        until = None
        if not self._indefinite and self._until is not None:
            until = round(self._wall_clock() + self._until - self._clock(), 3)
        return IntakeState(True, self._since, until, self._source, changed)

    def gauges(self) -> dict[str, float]:
        """``intake_paused`` (0/1) and ``intake_paused_since`` (unix time; 0 when not paused)."""
        return {INTAKE_PAUSED: 1 if self.paused else 0, INTAKE_PAUSED_SINCE: self._since or 0.0}

    # --- requests --------------------------------------------------------------------------------
    def pause(self, seconds: float | None, source: str) -> IntakeState:
        """Pause for ``seconds`` (None: until a resume); the longest outstanding pause wins."""
        if self.paused:
            return self._extend(seconds, source)
        self._indefinite = seconds is None
        self._until = None if seconds is None else self._clock() + seconds
        self._since = round(self._wall_clock(), 3)
        self._source = source
        self._open.clear()
        self._schedule()
        log.info("intake-paused", source=source, seconds=seconds, detail=_pause_detail(seconds))
        if self.on_pause is not None:
            self.on_pause()
        return self.state()

    def resume(self, source: str) -> IntakeState:
        """End every pause now; resuming when not paused changes nothing (and says so)."""
        if not self.paused:
            log.info("intake-not-paused", source=source, detail="resume ignored: intake is running")
            return self.state(changed=False)
        self._end(source)
        return self.state()

    def pause_from_header(self, value: str, message_id: str) -> None:
        """A worker answered with ``X-Asqsd-Pause-Seconds: value``: pause that long if it is a
        number of seconds; garbage is logged (once per distinct value) and ignored."""
        if not self.enabled:
            if not self._header_ignored_logged:
                self._header_ignored_logged = True
                log.warning(
                    "pause-header-ignored",
                    header=PAUSE_HEADER,
                    message_id=message_id,
                    detail="pause_control is off; logged once",
                )
            return
        seconds = parse_pause_seconds(value)
        if seconds is None:
            self._log_bad_header(value, message_id)
        elif seconds > 0:
            self.pause(seconds, "worker-header")

    def close(self) -> None:
        """Shutdown: drop the resume timer (the receivers are stopping anyway)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- internals -------------------------------------------------------------------------------
    def _extend(self, seconds: float | None, source: str) -> IntakeState:
        before = (self._indefinite, self._until)
        if seconds is None:
            self._indefinite = True
        else:
            end = self._clock() + seconds
            if self._until is None or end > self._until:
                self._until = end
                self._schedule()
        extended = (self._indefinite, self._until) != before
        # A worker header arrives with every answer while a pause lasts: only the API's repeat
        # is worth an info line.
        level = log.info if source != "worker-header" else log.debug
        level(
            "intake-already-paused",
            source=source,
            seconds=seconds,
            extended=extended,
            detail="the longest pause wins" if not extended else "pause extended",
        )
        return self.state(changed=extended)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._until is not None:
            delay = max(0.0, self._until - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._until = None
        if self._indefinite:
            return  # an indefinite pause outlasts any timed one
        self._end("timer")

    def _end(self, source: str) -> None:
        paused_s = round(self._wall_clock() - (self._since or self._wall_clock()), 3)
        self.close()
        self._indefinite = False
        self._until = None
        self._since = None
        self._source = None
        self._open.set()
        log.info("intake-resumed", source=source, paused_s=paused_s)

    def _log_bad_header(self, value: str, message_id: str) -> None:
        if value == self._bad_header:
            return
        self._bad_header = value
        log.warning(
            "pause-header-invalid",
            header=PAUSE_HEADER,
            value=value[:_SHOWN_CHARS],
            message_id=message_id,
            detail="expected a non-negative number of seconds; ignored (logged once per value)",
        )


def _pause_detail(seconds: float | None) -> str:
    if seconds is None:
        return "receiving paused until a resume; in-flight POSTs finish"
    return f"receiving paused for {seconds:g} s; in-flight POSTs finish"
