"""An append-only text file written one line at a time, that never raises into the daemon.

Shared by the stock log (:mod:`asqsd.observe.stocklog`) and the EMF metrics file
(:mod:`asqsd.observe.emf`): both are read by log shippers that tail the file and both must
survive logrotate (SIGHUP -> :meth:`LineFile.reopen`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from asqsd.logs import get_logger

log = get_logger("linefile")


class LineFile:
    """Appends lines to ``path``; log events are named ``<event_prefix>-write-failed`` and so on.

    The file is opened lazily in append mode, line-buffered, so each line reaches the file when
    written and ``tail -f`` / log shippers see it at once. The directory is created if missing.
    :meth:`reopen` lets logrotate move the file away. A write error is logged once per streak of
    failures; lines written while the file is unusable are dropped and counted.

    Writes are synchronous: a line is one small ``write`` to a local file, cheaper than handing it
    to a thread.
    """

    def __init__(self, path: Path | str, event_prefix: str) -> None:
        self.path = Path(path)
        self._prefix = event_prefix
        self._file: TextIO | None = None
        self._failing = False
        self.dropped = 0

    def write(self, line: str) -> bool:
        """Append ``line`` (with its line feed); False when it was dropped."""
        try:
            self._ensure_open().write(line)
        except (OSError, ValueError) as exc:  # ValueError: write to a file closed under us
            self.dropped += 1
            self._close_quietly()  # a later write retries from a fresh open
            if not self._failing:
                self._failing = True
                log.error(f"{self._prefix}-write-failed", path=str(self.path), error=str(exc))
            return False
        if self._failing:
            self._failing = False
            log.info(f"{self._prefix}-write-recovered", path=str(self.path), dropped=self.dropped)
        return True

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
                log.warning(f"{self._prefix}-close-failed", path=str(self.path), error=str(exc))
