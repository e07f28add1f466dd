"""Optional log file in the stock daemon's line format, for tooling that greps it.

Lines look like ``2017-01-28T17:55:02Z http-err: 1bed... (4) 504 - 68.761``: a UTC timestamp in
whole seconds with ``Z``, the category, a colon, the message. The stock file is
``/var/log/aws-sqsd/default.log``. asqsd's own structured log is unaffected; this file is an extra
copy of the few events scripts and dashboards are known to match on.

The formatting functions are pure; :class:`StockLogWriter` adds the file handling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from asqsd.observe.linefile import LineFile

DEFAULT_PATH = Path("/var/log/aws-sqsd/default.log")


def _one_line(text: str) -> str:
    # One event per line is what grep-based tooling relies on; a worker error text must not be
    # able to forge extra lines.
    return " ".join(text.splitlines())


def format_timestamp(epoch_s: float) -> str:
    """UTC ISO-8601 in whole seconds with ``Z``: ``2017-01-28T17:55:02Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def format_line(epoch_s: float, category: str, message: str) -> str:
    """``<timestamp> <category>: <message>`` with the trailing line feed."""
    return f"{format_timestamp(epoch_s)} {category}: {_one_line(message)}\n"


def http_err(message_id: str, receive_count: int, status: int, elapsed_s: float) -> str:
    """Message of an ``http-err`` line: ``<id> (<receive count>) <status> - <seconds.mmm>``."""
    return f"{message_id} ({receive_count}) {status} - {elapsed_s:.3f}"


def socket_err(message_id: str, receive_count: int, error: str, elapsed_s: float) -> str:
    """Message of a ``socket-err`` line: ``<id> (<receive count>) <error> - <seconds.mmm>``."""
    return f"{message_id} ({receive_count}) {_one_line(error)} - {elapsed_s:.3f}"


def expired_msg(message_id: str, age_s: float) -> str:
    """Message of an ``expired-msg`` line: ``<id> was first received N seconds ago. deleting``."""
    return f"{message_id} was first received {int(age_s)} seconds ago. deleting"


def message_sent(url: str) -> str:
    """Message of a ``message`` line: ``sent to <url>``."""
    return f"sent to {url}"


class StockLogWriter:
    """Appends stock-format lines to ``path``; never raises into the daemon.

    File handling (lazy append, line-buffered, reopen on SIGHUP, one error log per streak of
    failures) is :class:`~asqsd.observe.linefile.LineFile`'s.
    """

    def __init__(
        self, path: Path | str = DEFAULT_PATH, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._file = LineFile(path, "stock-log")
        self._clock = wall_clock

    @property
    def path(self) -> Path:
        """The log file."""
        return self._file.path

    @property
    def dropped(self) -> int:
        """Lines dropped because the file could not be written."""
        return self._file.dropped

    # --- events ----------------------------------------------------------------------------------
    def http_err(self, message_id: str, receive_count: int, status: int, elapsed_s: float) -> None:
        """A delivery answered with a failure status."""
        self.write("http-err", http_err(message_id, receive_count, status, elapsed_s))

    def socket_err(self, message_id: str, receive_count: int, error: str, elapsed_s: float) -> None:
        """A delivery that got no HTTP response (refused, timed out, reset)."""
        self.write("socket-err", socket_err(message_id, receive_count, error, elapsed_s))

    def expired_msg(self, message_id: str, age_s: float) -> None:
        """A message deleted unsent because it is older than the retention period."""
        self.write("expired-msg", expired_msg(message_id, age_s))

    def message_sent(self, url: str) -> None:
        """A message was POSTed to ``url``."""
        self.write("message", message_sent(url))

    # --- file handling ---------------------------------------------------------------------------
    def write(self, category: str, message: str) -> None:
        """Append one line; on failure it is counted as dropped (see :class:`LineFile`)."""
        self._file.write(format_line(self._clock(), category, message))

    def reopen(self) -> None:
        """Close the file so the next line opens ``path`` afresh (after logrotate moved it)."""
        self._file.reopen()

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        self._file.close()
