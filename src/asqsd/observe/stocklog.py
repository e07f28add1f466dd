"""Optional log file in the stock daemon's line format (contract §5), for tooling that greps it.

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
from typing import TextIO

from asqsd.logs import get_logger

log = get_logger("stocklog")

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

    The file is opened lazily in append mode, line-buffered, so each line reaches the file when
    written and ``tail -f`` / log shippers see it at once. The directory is created if missing.
    :meth:`reopen` (wire it to SIGHUP) lets logrotate move the file away. A write error is logged
    once per streak of failures; lines written while the file is unusable are dropped.

    Writes are synchronous: a line is one small ``write`` to a local file, cheaper than handing it
    to a thread.
    """

    def __init__(
        self, path: Path | str = DEFAULT_PATH, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._clock = wall_clock
        self._file: TextIO | None = None
        self._failing = False
        self.dropped = 0

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
        """Append one line; on failure count it as dropped and log the first failure of a streak."""
        line = format_line(self._clock(), category, message)
        try:
            self._ensure_open().write(line)
        except (OSError, ValueError) as exc:  # ValueError: write to a file closed under us
            self.dropped += 1
            self._close_quietly()  # a later write retries from a fresh open
            if not self._failing:
                self._failing = True
                log.error("stock-log-write-failed", path=str(self.path), error=str(exc))
            return
        if self._failing:
            self._failing = False
            log.info("stock-log-write-recovered", path=str(self.path), dropped=self.dropped)

    def reopen(self) -> None:
        """Close the file so the next line opens ``path`` afresh (after logrotate moved it)."""
        self._close_quietly()

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        self._close_quietly()

    def _ensure_open(self) -> TextIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8", errors="replace", buffering=1)
        return self._file

    def _close_quietly(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                log.warning("stock-log-close-failed", path=str(self.path), error=str(exc))
