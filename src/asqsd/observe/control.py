"""Control endpoints on the health server: ``POST /pause``, ``POST /resume``, ``GET /inflight``.

* ``POST /pause`` (``?seconds=N`` for a timed pause, else until a resume) and ``POST /resume``
  answer 200 with the intake state as JSON (``state``, ``since``, ``until``, ``source``,
  ``changed``). They change the daemon, so they answer loopback clients only (403 otherwise,
  even when ``health_allow_remote`` binds a wider address) and only with ``pause_control`` on
  (403 with the setting to change otherwise).
* ``GET /inflight`` (``?limit=N``, default :data:`DEFAULT_LIMIT`, at most :data:`MAX_LIMIT`)
  lists the messages asqsd holds: message id, a hash of the receipt handle, receive count,
  state, seconds held and seconds of visibility left; plus the total, the count per state and
  the intake state. Never a body or a receipt handle.

The server reads and drives the daemon only through :class:`ControlView`, which the daemon
satisfies, so nothing here imports the pipeline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from asqsd.addresses import is_loopback_host

DEFAULT_LIMIT = 100


MAX_LIMIT = 1000


# The longest timed pause ``POST /pause?seconds=`` takes (a day); without seconds a pause lasts
# until a resume.
MAX_PAUSE_S = 86400.0


_NO_CACHE = {"Cache-Control": "no-store"}


class ControlView(Protocol):
    """What the control endpoints read and drive (the daemon's intake gate and pipeline)."""

    @property
    def pause_control(self) -> bool:
        """The ``pause_control`` setting: whether /pause and /resume may change anything."""
        ...

    def intake_state(self) -> Mapping[str, object]:
        """The intake state (``state``: ``running`` or ``paused``, ``since``, ``until`` ...)."""
        ...

    def pause(self, seconds: float | None) -> Mapping[str, object]:
        """Pause intake for ``seconds`` (None: until a resume); returns the new intake state."""
        ...

    def resume(self) -> Mapping[str, object]:
        """Resume intake; returns the new intake state."""
        ...

    def inflight(self, limit: int) -> Mapping[str, object]:
        """The held messages (``total``, ``counts``, ``messages``: at most ``limit`` of them)."""
        ...


def json_response(status: int, body: Mapping[str, object]) -> web.Response:
    """A JSON answer that no cache keeps."""
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **_NO_CACHE},
    )


def add_control_routes(app: web.Application, view: ControlView) -> None:
    """Register the three endpoints on the health server's application."""
    routes = ControlRoutes(view)
    app.router.add_post("/pause", routes.pause)
    app.router.add_post("/resume", routes.resume)
    app.router.add_get("/inflight", routes.inflight)


class ControlRoutes:
    """The three handlers, on one view."""

    def __init__(self, view: ControlView) -> None:
        self._view = view

    async def pause(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        raw = request.query.get("seconds")
        seconds = None if raw is None else parse_seconds(raw)
        if raw is not None and seconds is None:
            return _error(400, f"seconds must be a number of seconds > 0 and <= {MAX_PAUSE_S:g}, got {raw!r}")
        return json_response(200, self._view.pause(seconds))

    async def resume(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return json_response(200, self._view.resume())

    async def inflight(self, request: web.Request) -> web.Response:
        raw = request.query.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 0 <= int(raw) <= MAX_LIMIT:
            return _error(400, f"limit must be a whole number from 0 to {MAX_LIMIT}, got {raw!r}")
        body = {"intake": self._view.intake_state(), **self._view.inflight(int(raw))}
        return json_response(200, body)

    def _refused(self, request: web.Request) -> web.Response | None:
        if not is_loopback_host(request.remote or ""):
            return _error(403, "pause and resume answer loopback clients only")
        if not self._view.pause_control:
            return _error(403, "pause control is off: set pause_control (ASQSD_PAUSE_CONTROL=true)")
        return None


def parse_seconds(raw: str) -> float | None:
    """A timed pause's seconds: a finite number > 0 and <= :data:`MAX_PAUSE_S`; None otherwise."""
    try:
        seconds = float(raw)
    except ValueError:
        return None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_PAUSE_S:
        return None
    return seconds


def _error(status: int, message: str) -> web.Response:
    return json_response(status, {"error": message})
