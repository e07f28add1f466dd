"""structlog setup: JSON when not on a terminal, console otherwise; secrets never rendered.

Configured once by the CLI entry point (the only place global state is allowed).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_KEY_PARTS = ("secret", "password", "token", "credential", "authorization")
_ACCESS_KEY_RE = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")
RECEIPT_PREFIX_LEN = 12


def short_receipt(receipt_handle: str) -> str:
    """A receipt handle cut to a prefix: enough to correlate lines, useless to act on."""
    if len(receipt_handle) <= RECEIPT_PREFIX_LEN:
        return receipt_handle
    return receipt_handle[:RECEIPT_PREFIX_LEN] + "…"


def printable_bytes(data: bytes) -> str:
    """Untrusted ``data`` (the start of a worker's response) as one safe log value.

    Decoded as UTF-8 with replacement characters; control and other non-printable characters are
    escaped (``\\n``, ``\\x1b``) so the text can never break or forge a log line.
    """
    text = data.decode("utf-8", "replace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: mask secret-looking keys, cut receipt handles, hide AWS access key ids."""
    for key, value in list(event.items()):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEY_PARTS):
            event[key] = "****"
        elif "receipt" in lowered and isinstance(value, str):
            event[key] = short_receipt(value)
        elif isinstance(value, str) and _ACCESS_KEY_RE.search(value):
            event[key] = _ACCESS_KEY_RE.sub(lambda m: m.group(0)[:4] + "****", value)
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib bridge for botocore/aiohttp warnings)."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # Library loggers (botocore, aiohttp) only reach us at WARNING and above.
    logging.basicConfig(stream=stream, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def get_logger(name: str) -> Any:
    """A structlog logger bound to a component name."""
    return structlog.get_logger(component=name)
