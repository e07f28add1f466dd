"""Health endpoints: liveness, readiness and Prometheus metrics on a small aiohttp server.

* ``GET /healthz`` (liveness): 200 while the event loop answers and no component crashed; also
  200 while draining after a stop request, so a supervisor does not kill a graceful shutdown.
* ``GET /readyz`` (readiness): 200 only when the daemon is serving, SQS is reachable and the
  worker port accepts connections; otherwise 503 with a JSON body naming the failed checks. A
  credential problem is named in place of the state it holds up (``"daemon":
  "credentials-missing"`` while start-up waits for credentials, ``"sqs": "credentials-expired"``
  once serving). During a worker outage (asqsd holds messages and has paused receiving) the
  worker check says ``"outage"``.
  SQS counts as reachable when a ReceiveMessage succeeded recently (free: no extra call);
  otherwise the daemon's cheap check runs. Check results are cached for a few seconds so a
  tight probe loop cannot turn into load on SQS or the worker.
* ``GET /metrics``: Prometheus text 0.0.4, or OpenMetrics when asked (:mod:`asqsd.observe.prometheus`).
* ``POST /ack/<token>``: with ``async_ack``, a worker reports the outcome of a job it answered 202
  for; the daemon attaches the :class:`AckReceiver` that applies it (404 while none is attached).
* ``POST /pause``, ``POST /resume``, ``GET /inflight`` when given a control view
  (:mod:`asqsd.observe.control`). While intake is paused ``/readyz`` still answers 200 (a paused
  daemon is healthy and doing what it was told; a 503 would have an orchestrator restart it or
  a deploy wait on it) with ``"intake": {"state": "paused", "since": ...}`` in its body.

The server only reads the daemon through :class:`DaemonView` (see docs/observability.md for
what each member must return). It binds to loopback unless explicitly allowed otherwise: the
endpoints are unauthenticated and reveal queue activity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from asqsd.addresses import is_loopback_host, join_host_port
from asqsd.logs import get_logger
from asqsd.observe.control import ControlView, add_control_routes
from asqsd.observe.control import json_response as _json
from asqsd.observe.delivery import DeliveryStats
from asqsd.observe.gauges import INTAKE_PAUSED, INTAKE_PAUSED_SINCE, WORKER_OUTAGE
from asqsd.observe.health_source import HealthSource, successful_receives
from asqsd.observe.prometheus import metrics_registry, render_metrics

log = get_logger("health")


DEFAULT_PORT = 9325


_NO_CACHE = {"Cache-Control": "no-store"}


class DaemonView(HealthSource, Protocol):
    """Everything :class:`HealthServer` reads from the daemon."""

    @property
    def ready(self) -> asyncio.Event:
        """Set once the daemon is serving (receivers and dispatchers started)."""
        ...

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        ...

    @property
    def failure(self) -> BaseException | None:
        """The exception of a crashed component; None while healthy."""
        ...

    @property
    def credential_problem(self) -> str | None:
        """The current credential problem's log event (``credentials-missing`` ...); None if none."""
        ...

    @property
    def delivery(self) -> DeliveryStats:
        """Latency histogram and dead-letter-bound count, updated by the dispatchers."""
        ...

    def gauges(self) -> Mapping[str, float]:
        """Current gauges under the keys of :mod:`asqsd.observe.gauges` (``in_flight`` ...)."""
        ...


class AckReply(Protocol):
    """The answer to one acknowledgement: an HTTP status and a JSON body."""

    @property
    def status(self) -> int:
        """200 applied, 400 bad body, 404 unknown token, 409 already settled, 410 too late ..."""
        ...

    @property
    def body(self) -> Mapping[str, object]:
        """What to tell the worker, as JSON."""
        ...


class AckReceiver(Protocol):
    """What applies ``POST /ack/<token>`` (the pipeline's async job registry)."""

    def acknowledge(self, token: str, body: bytes) -> AckReply:
        """Apply the acknowledgement ``body`` for ``token`` and say what happened."""
        ...


# An acknowledgement is a few dozen bytes of JSON; anything much longer is refused unread.
_MAX_ACK_BYTES = 4096


# --- cached checks -------------------------------------------------------------------------------
class CachedCheck:
    """Runs an async check at most once per ``ttl_s``; callers in between share the result.

    A check that raises or exceeds ``timeout_s`` counts as failed. Concurrent callers wait for
    the one check in progress instead of starting their own.
    """

    def __init__(
        self,
        name: str,
        check: Callable[[], Awaitable[bool]],
        ttl_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._check = check
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._value = False
        self._at: float | None = None
        self.runs = 0

    async def __call__(self) -> bool:
        async with self._lock:
            if self._at is not None and self._clock() - self._at < self._ttl_s:
                return self._value
            self._value = await self._run()
            self._at = self._clock()
            return self._value

    async def _run(self) -> bool:
        self.runs += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._check())
        except TimeoutError:
            log.debug("check-timed-out", check=self.name, timeout_s=self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - the check is the daemon's code; any error means "not ok"
            log.debug("check-failed", check=self.name, error=repr(exc))
        return False


class SqsReachability:
    """SQS is reachable if a receive succeeded within ``fresh_s``; else the (cached) cheap check.

    The receive counter is sampled on each call, so "recent" is measured from when a new success
    was first seen. With long polling a healthy idle receiver succeeds every ``wait_time_s``
    (≤ 20 s); a saturated daemon stops receiving, which is why the fallback check exists.
    """

    def __init__(
        self,
        source: HealthSource,
        *,
        fresh_s: float = 30.0,
        ttl_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._fresh_s = fresh_s
        self._clock = clock
        self._seen = successful_receives(source.counters)
        self._last_success: float | None = None
        self.fallback = CachedCheck("sqs", source.check_sqs, ttl_s, timeout_s, clock)

    async def __call__(self) -> bool:
        now = self._clock()
        seen = successful_receives(self._source.counters)
        if seen != self._seen:
            self._seen = seen
            self._last_success = now
        if self._last_success is not None and now - self._last_success < self._fresh_s:
            return True
        return await self.fallback()


# --- the server ----------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Readiness:
    """The outcome of a readiness evaluation: overall flag and one status string per check."""

    ready: bool
    checks: dict[str, str]
    intake: dict[str, object] | None = None  # set while intake is paused

    def body(self) -> dict[str, object]:
        """The JSON body of /readyz."""
        failed = [name for name, status in self.checks.items() if status != "ok"]
        body: dict[str, object] = {
            "status": "ready" if self.ready else "not ready",
            "failed": failed,
            "checks": self.checks,
        }
        if self.intake is not None:
            body["intake"] = self.intake
        return body


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` for one daemon; ``await start()`` / ``stop()``.

    ``port=0`` binds an ephemeral port; :attr:`port` holds the bound port after :meth:`start`
    (use an IP literal then: ``localhost`` may bind 127.0.0.1 and ::1 on two different ports).
    A non-loopback ``host`` raises ValueError unless ``allow_remote`` is true.
    """

    def __init__(
        self,
        view: DaemonView,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        allow_remote: bool = False,
        check_ttl_s: float = 5.0,
        check_timeout_s: float = 2.0,
        sqs_fresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        control: ControlView | None = None,
    ) -> None:
        if not allow_remote and not is_loopback_host(host):
            raise ValueError(
                f"health server host {host!r} is not a loopback address; the endpoints have no "
                "authentication, so binding it needs allow_remote (health_allow_remote)"
            )
        if not 0 <= port <= 65535:
            raise ValueError(f"health server port {port} out of range")
        self._view = view
        self._host = host.strip("[]")  # "[::1]" is URL syntax; the socket wants "::1"
        self.port = port
        self._sqs = SqsReachability(
            view, fresh_s=sqs_fresh_s, ttl_s=check_ttl_s, timeout_s=check_timeout_s, clock=clock
        )
        self._worker = CachedCheck("worker", view.check_worker, check_ttl_s, check_timeout_s, clock)
        self._runner: web.AppRunner | None = None
        self.ack_receiver: AckReceiver | None = None  # async_ack: set by the daemon
        self._control = control

    @property
    def url(self) -> str:
        """Base URL of the bound server (meaningful after :meth:`start`)."""
        return f"http://{join_host_port(self._host, self.port)}"

    @property
    def local_url(self) -> str:
        """:attr:`url` as a process on this host reaches it (loopback for a wildcard address)."""
        wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - a lookup, not a bind
        host = wildcard.get(self._host, self._host)
        return f"http://{join_host_port(host, self.port)}"

    async def start(self) -> None:
        """Bind and serve; raises OSError if the address is taken."""
        if self._runner is not None:
            raise RuntimeError("health server already started")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/ack/{token}", self._ack)
        if self._control is not None:
            add_control_routes(app, self._control)
        # No access log: a scraper every few seconds would drown the daemon's own log lines.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health-server-started", url=self.url)

    async def stop(self) -> None:
        """Stop serving (safe to call twice, or without start)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def readiness(self) -> Readiness:
        """Evaluate readiness (also usable without HTTP, e.g. by a ``--check`` command)."""
        view = self._view
        if view.failure is not None:
            state = "crashed"
        elif view.stopping:
            state = "stopping"
        elif not view.ready.is_set():
            state = view.credential_problem or "starting"
        else:
            state = "ok"
        if state != "ok":
            # SQS and worker checks mean nothing before the daemon serves (its client may not
            # exist yet) or after it stopped.
            return Readiness(False, {"daemon": state, "sqs": "skipped", "worker": "skipped"})
        sqs_ok, worker_ok = await asyncio.gather(self._sqs(), self._worker())
        # Refused credentials hold SQS up even when a receive succeeded a moment ago.
        problem = view.credential_problem
        sqs_ok = sqs_ok and problem is None
        checks = {
            "daemon": "ok",
            "sqs": "ok" if sqs_ok else problem or "unreachable",
            "worker": "ok" if worker_ok else "unreachable",
        }
        # A worker that accepts connections may still be in an outage (statuses, or not probed yet).
        gauges = view.gauges()
        if gauges.get(WORKER_OUTAGE, 0) > 0:
            checks["worker"] = "outage"
            worker_ok = False
        return Readiness(sqs_ok and worker_ok, checks, _paused(gauges))

    async def _healthz(self, _request: web.Request) -> web.Response:
        failure = self._view.failure
        if failure is not None:
            body: dict[str, object] = {"status": "crashed", "error": type(failure).__name__}
            return _json(503, body)
        return _json(200, {"status": "stopping" if self._view.stopping else "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        result = await self.readiness()
        return _json(200 if result.ready else 503, result.body())

    async def _metrics(self, request: web.Request) -> web.Response:
        # OpenMetrics if the scraper asks for it, else the text format 0.0.4.
        body, content_type = render_metrics(metrics_registry(self._view), request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type, **_NO_CACHE})

    async def _ack(self, request: web.Request) -> web.Response:
        receiver = self.ack_receiver
        if receiver is None:
            return _json(404, {"error": "asynchronous acknowledgement (async_ack) is off"})
        body = await request.content.read(_MAX_ACK_BYTES + 1)
        if len(body) > _MAX_ACK_BYTES:
            return _json(413, {"error": f"body longer than {_MAX_ACK_BYTES} bytes"})
        reply = receiver.acknowledge(request.match_info["token"], body)
        return _json(reply.status, reply.body)


def _paused(gauges: Mapping[str, float]) -> dict[str, object] | None:
    """The intake part of /readyz: only while paused (a running daemon's body is as it always was)."""
    if gauges.get(INTAKE_PAUSED, 0) <= 0:
        return None
    return {"state": "paused", "since": gauges.get(INTAKE_PAUSED_SINCE)}
