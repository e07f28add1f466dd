"""The control endpoints' refusals, on requests made without a socket (a remote peer cannot be
had on a loopback-only machine)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from asqsd.observe.control import MAX_PAUSE_S, ControlRoutes, parse_seconds


class View:
    """A ControlView that records the pauses asked for."""

    def __init__(self, pause_control: bool = True) -> None:
        self.pause_control = pause_control
        self.pauses: list[float | None] = []

    def intake_state(self) -> Mapping[str, object]:
        return {"state": "running"}

    def pause(self, seconds: float | None) -> Mapping[str, object]:
        self.pauses.append(seconds)
        return {"state": "paused"}

    def resume(self) -> Mapping[str, object]:
        return {"state": "running"}

    def inflight(self, limit: int) -> Mapping[str, object]:
        return {"total": 0, "limit": limit}


def request_from(peer: str, path: str = "/pause", method: str = "POST") -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    return make_mocked_request(method, path, transport=transport)


def error_of(response: web.Response) -> str:
    assert isinstance(response.body, bytes)
    return str(json.loads(response.body)["error"])


@pytest.mark.parametrize("peer", ["10.0.0.7", "192.168.1.2", "2001:db8::1"])
async def test_a_remote_client_may_not_pause_or_resume(peer: str) -> None:
    view = View()
    routes = ControlRoutes(view)
    for handler in (routes.pause, routes.resume):
        response = await handler(request_from(peer))
        assert response.status == 403 and "loopback" in error_of(response)
    assert view.pauses == []


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.3.4.5", "::1"])
async def test_a_loopback_client_may(peer: str) -> None:
    view = View()
    response = await ControlRoutes(view).pause(request_from(peer, "/pause?seconds=2.5"))
    assert response.status == 200 and view.pauses == [2.5]


async def test_pause_control_off_names_the_setting() -> None:
    view = View(pause_control=False)
    response = await ControlRoutes(view).pause(request_from("127.0.0.1"))
    assert response.status == 403 and "pause_control" in error_of(response)
    assert view.pauses == []


async def test_inflight_is_read_only_and_open_to_any_client_the_server_admits() -> None:
    response = await ControlRoutes(View()).inflight(request_from("10.0.0.7", "/inflight?limit=7", "GET"))
    assert response.status == 200
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == {"intake": {"state": "running"}, "total": 0, "limit": 7}


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("1", 1.0),
        ("0.5", 0.5),
        (str(MAX_PAUSE_S), MAX_PAUSE_S),
        ("0", None),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("x", None),
        (str(MAX_PAUSE_S + 1), None),
    ],
)
def test_parse_seconds(raw: str, seconds: float | None) -> None:
    assert parse_seconds(raw) == seconds
