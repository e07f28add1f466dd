"""``asqsd pause | resume | status``: drive and inspect a running daemon through its health server.

Each command makes one HTTP request to the daemon's health server (``POST /pause``,
``POST /resume``, ``GET /inflight``), found from the settings (``health_host``,
``health_port``: flags, environment, ``--config``) or given with ``--health-url``. They need the
daemon to run with ``health_server`` on, and pause and resume also with ``pause_control``.
Nothing answering, or the daemon refusing, is one clear line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from asqsd.addresses import join_host_port
from asqsd.cli.exits import EXIT_FAILURE, EXIT_OK
from asqsd.config import Settings

_TIMEOUT_S = 5.0

# A wildcard bind answers on loopback too; the CLI runs on the daemon's host.
_WILDCARDS = {"", "0.0.0.0", "::"}  # noqa: S104 - recognised here, never bound

_COLUMNS = ("MESSAGE ID", "RECEIVES", "STATE", "HELD S", "VISIBLE IN S", "RECEIPT")


class ControlError(Exception):
    """The daemon could not be reached, or refused the request; the message says which."""


def add_control_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of one control command (beside the settings flags)."""
    parser.add_argument(
        "--health-url",
        default=None,
        help="the daemon's health server, e.g. http://127.0.0.1:9325 (default: from health_host "
        "and health_port)",
    )
    if command == "pause":
        parser.add_argument(
            "--seconds", type=float, default=None, help="resume by itself after this long (default: never)"
        )
    if command == "status":
        parser.add_argument("--limit", type=int, default=100, help="list at most this many messages (≤ 1000)")
        parser.add_argument("--json", action="store_true", help="print the daemon's JSON answer as is")


def health_url(settings: Settings, given: str | None) -> str:
    """``--health-url`` if given, else the health server the settings describe (loopback for a
    wildcard address)."""
    if given:
        return given.rstrip("/")
    host = settings.health_host.strip("[]")
    if host in _WILDCARDS:
        host = "::1" if ":" in host else "127.0.0.1"
    return f"http://{join_host_port(host, settings.health_port)}"


def control_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``asqsd pause``, ``resume`` or ``status``; the exit code."""
    base = health_url(settings, args.health_url)
    try:
        if args.command == "pause":
            query = "" if args.seconds is None else f"?seconds={args.seconds:g}"
            print(describe_intake(request(base, "POST", "/pause" + query)))
        elif args.command == "resume":
            print(describe_intake(request(base, "POST", "/resume")))
        else:
            answer = request(base, "GET", f"/inflight?limit={args.limit}")
            print(json.dumps(answer, indent=2) if args.json else status_text(answer))
    except ControlError as exc:
        print(f"asqsd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def request(base: str, method: str, path: str) -> dict[str, Any]:
    """One request to the health server; its JSON answer, or :class:`ControlError`."""
    if not base.startswith(("http://", "https://")):
        raise ControlError(f"health URL {base!r}: expected http://host:port")
    data = b"" if method == "POST" else None
    call = urllib.request.Request(base + path, method=method, data=data)  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(call, timeout=_TIMEOUT_S) as response:  # noqa: S310 - scheme checked
            return _json_object(response.read())
    except urllib.error.HTTPError as exc:
        raise ControlError(f"{base}{path}: HTTP {exc.code}: {_error_text(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ControlError(
            f"nothing answers at {base} ({reason}); is asqsd running with health_server on? "
            "(--health-url names another address)"
        ) from None


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise ControlError(f"not a JSON answer: {data[:80]!r}") from None
    if not isinstance(value, dict):
        raise ControlError(f"not a JSON object: {data[:80]!r}")
    return value


def _error_text(exc: urllib.error.HTTPError) -> str:
    body = exc.read()
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace") or str(exc.reason)


# --- text ------------------------------------------------------------------------------------------
def describe_intake(state: Mapping[str, Any]) -> str:
    """One line for an intake state: running, or paused since when and until when."""
    if state.get("state") != "paused":
        return "intake running" if state.get("changed", True) else "intake was not paused: running"
    until = state.get("until")
    end = f"until {_when(until)}" if isinstance(until, (int, float)) else "until resumed"
    line = f"intake paused since {_when(state.get('since'))}, {end} (by {state.get('source')})"
    return line if state.get("changed", True) else f"{line}; it was already paused"


def status_text(answer: Mapping[str, Any]) -> str:
    """``asqsd status``: the intake line, the counts, then one table row per listed message."""
    counts = answer.get("counts") or {}
    messages = answer.get("messages") or []
    lines = [
        describe_intake(answer.get("intake") or {}),
        f"held: {answer.get('total', 0)} ("
        + ", ".join(f"{state} {count}" for state, count in counts.items())
        + ")",
    ]
    if messages:
        rows = [_COLUMNS, *(_row(m) for m in messages)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines += [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        if len(messages) < int(answer.get("total", 0)):
            lines.append(f"(the {len(messages)} held longest of {answer['total']}; --limit shows more)")
    return "\n".join(lines)


def _row(message: Mapping[str, Any]) -> tuple[str, ...]:
    held = message.get("held_s")
    return (
        str(message.get("message_id")),
        str(message.get("receive_count")),
        str(message.get("state")),
        "?" if held is None else f"{held:.1f}",
        f"{message.get('visibility_left_s', 0):.1f}",
        str(message.get("receipt_hash")),
    )


def _when(unix: object) -> str:
    if not isinstance(unix, (int, float)):
        return "?"
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
