"""The admin HTTP API under ``/_asqsd/`` (JSON in, JSON out), for harnesses running the emulator as a
subprocess.  Documented in docs/emulator.md."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from asqsd.emulator import errors

if TYPE_CHECKING:
    from asqsd.emulator.server import Emulator

PREFIX = "/_asqsd"
AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, emulator: Emulator) -> None:
    api = _AdminApi(emulator)
    routes: list[tuple[str, str, AdminHandler]] = [
        ("GET", "/health", api.health),
        ("GET", "/counters", api.get_counters),
        ("POST", "/counters/reset", api.reset_counters),
        ("GET", "/faults", api.get_faults),
        ("POST", "/faults", api.merge_faults),
        ("PUT", "/faults", api.replace_faults),
        ("DELETE", "/faults", api.clear_faults),
        ("POST", "/queues", api.create_queue),
        ("POST", "/queues/{name}/preload", api.preload),
        ("POST", "/queues/{name}/purge", api.purge),
        ("POST", "/reset", api.reset),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, _guarded(handler))


def _guarded(handler: AdminHandler) -> AdminHandler:
    """Map bad input to 400 and unknown queues to 404, with a JSON ``error`` body."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.SqsError as exc:
            status = 404 if exc.shape == "QueueDoesNotExist" else 400
            return _json({"error": exc.message, "code": exc.code}, status)
        except (ValueError, TypeError, KeyError) as exc:
            return _json({"error": str(exc)}, 400)

    return wrapper


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise ValueError("request body must be a JSON object")
    return payload


class _AdminApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def health(self, request: web.Request) -> web.StreamResponse:
        loop = type(asyncio.get_running_loop())
        return _json({"status": "ok", "queues": len(self.emu.store.queues), "loop": loop.__module__})

    async def get_counters(self, request: web.Request) -> web.StreamResponse:
        return _json(self.emu.counters(request.query.get("queue")))

    async def reset_counters(self, request: web.Request) -> web.StreamResponse:
        self.emu.reset_counters()
        return _json({"reset": True})

    async def get_faults(self, request: web.Request) -> web.StreamResponse:
        return _json(self.emu.faults.to_dict())

    async def merge_faults(self, request: web.Request) -> web.StreamResponse:
        self.emu.faults.configure(await _body(request))
        return _json(self.emu.faults.to_dict())

    async def replace_faults(self, request: web.Request) -> web.StreamResponse:
        spec = await _body(request)
        self.emu.faults.clear()
        self.emu.faults.configure(spec)
        return _json(self.emu.faults.to_dict())

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.emu.faults.clear()
        return _json(self.emu.faults.to_dict())

    async def create_queue(self, request: web.Request) -> web.StreamResponse:
        spec = await _body(request)
        name = spec["name"]
        queue = self.emu.store.create_queue(name, dict(spec.get("attributes") or {}))
        url = f"http://{request.host}/{self.emu.store.account_id}/{queue.name}"
        return _json({"QueueUrl": url})

    async def preload(self, request: web.Request) -> web.StreamResponse:
        spec = await _body(request)
        added = self.emu.preload(
            request.match_info["name"],
            int(spec["count"]),
            body=str(spec.get("body", "message {i}")),
            message_attributes=spec.get("message_attributes"),
            attributes=spec.get("attributes"),
        )
        return _json({"added": added, **self.emu.counters(request.match_info["name"])})

    async def purge(self, request: web.Request) -> web.StreamResponse:
        return _json({"purged": self.emu.purge(request.match_info["name"])})

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.emu.reset()
        return _json({"reset": True})
