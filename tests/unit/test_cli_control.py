"""The text of ``asqsd pause | resume | status`` and how they find the health server."""

from __future__ import annotations

import pytest

from asqsd.cli.control import ControlError, describe_intake, health_url, request, status_text
from asqsd.config import load_settings

SINCE = 1796540000.0  # 2026-12-06 06:53:20 UTC


@pytest.mark.parametrize(
    ("host", "port", "given", "url"),
    [
        ("127.0.0.1", 9325, None, "http://127.0.0.1:9325"),
        ("::1", 9400, None, "http://[::1]:9400"),
        ("0.0.0.0", 9325, None, "http://127.0.0.1:9325"),
        ("::", 9325, None, "http://[::1]:9325"),
        ("127.0.0.1", 9325, "http://127.0.0.2:1234/", "http://127.0.0.2:1234"),
    ],
)
def test_health_url(host: str, port: int, given: str | None, url: str) -> None:
    allow = host not in ("127.0.0.1", "::1")
    settings = load_settings(
        {"health_host": host, "health_port": port, "health_allow_remote": allow}, env={}
    ).settings
    assert health_url(settings, given) == url


def test_only_http_urls_are_asked() -> None:
    with pytest.raises(ControlError, match="expected http://host:port"):
        request("file:///etc/passwd", "GET", "/inflight")


def test_describe_intake() -> None:
    assert describe_intake({"state": "running", "changed": True}) == "intake running"
    assert describe_intake({"state": "running", "changed": False}) == "intake was not paused: running"
    paused = {"state": "paused", "since": SINCE, "until": None, "source": "api", "changed": True}
    assert describe_intake(paused) == "intake paused since 2026-12-06 06:53:20 UTC, until resumed (by api)"
    timed = {**paused, "until": SINCE + 60, "source": "worker-header", "changed": False}
    assert describe_intake(timed) == (
        "intake paused since 2026-12-06 06:53:20 UTC, until 2026-12-06 06:54:20 UTC (by worker-header); "
        "it was already paused"
    )


def test_status_table_and_truncation_note() -> None:
    answer = {
        "intake": {"state": "running"},
        "total": 3,
        "counts": {"buffered": 1, "posting": 2, "settling": 0},
        "limit": 2,
        "messages": [
            {
                "message_id": "m-1",
                "receipt_hash": "abcdef012345",
                "receive_count": 2,
                "state": "posting",
                "held_s": 12.345,
                "visibility_left_s": 17.7,
            },
            {
                "message_id": "a-much-longer-message-id",
                "receipt_hash": "0123456789ab",
                "receive_count": 1,
                "state": "buffered",
                "held_s": None,
                "visibility_left_s": -1.0,
            },
        ],
    }
    assert status_text(answer).splitlines() == [
        "intake running",
        "held: 3 (buffered 1, posting 2, settling 0)",
        "MESSAGE ID                RECEIVES  STATE     HELD S  VISIBLE IN S  RECEIPT",
        "m-1                       2         posting   12.3    17.7          abcdef012345",
        "a-much-longer-message-id  1         buffered  ?       -1.0          0123456789ab",
        "(the 2 held longest of 3; --limit shows more)",
    ]


def test_status_with_nothing_held() -> None:
    answer = {"intake": {"state": "running"}, "total": 0, "counts": {}, "messages": []}
    assert status_text(answer) == "intake running\nheld: 0 ()"
