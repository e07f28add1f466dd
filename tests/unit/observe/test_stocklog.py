"""Stock log file lines: exact formats, line buffering, logrotate, write errors."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from asqsd.observe.stocklog import (
    StockLogWriter,
    expired_msg,
    format_line,
    format_timestamp,
    http_err,
    message_sent,
    socket_err,
)

# 2017-01-28T17:55:02Z, the timestamp of a published stock log line.
EXAMPLE_EPOCH = calendar.timegm((2017, 1, 28, 17, 55, 2, 0, 0, 0))


class TestFormatting:
    """The pure formatting functions reproduce published stock log lines byte for byte."""

    def test_timestamp_whole_seconds_utc(self) -> None:
        """UTC, ISO-8601, Z suffix, fractions dropped (not rounded up)."""
        assert format_timestamp(EXAMPLE_EPOCH) == "2017-01-28T17:55:02Z"
        assert format_timestamp(EXAMPLE_EPOCH + 0.999) == "2017-01-28T17:55:02Z"

    def test_http_err_example(self) -> None:
        """``<ts> http-err: <id> (<count>) <status> - <seconds.mmm>``."""
        line = format_line(EXAMPLE_EPOCH, "http-err", http_err("1bed...", 4, 504, 68.761))
        assert line == "2017-01-28T17:55:02Z http-err: 1bed... (4) 504 - 68.761\n"

    def test_elapsed_has_three_decimals(self) -> None:
        """Elapsed seconds always carry milliseconds, even when whole."""
        assert http_err("m", 1, 500, 2) == "m (1) 500 - 2.000"
        assert http_err("m", 1, 500, 0.0004) == "m (1) 500 - 0.000"

    def test_socket_err(self) -> None:
        """``socket-err: <id> (<count>) <error> - <secs>``; a multi-line error stays on one line."""
        assert socket_err("abc", 2, "Connection refused", 0.0125) == "abc (2) Connection refused - 0.013"
        line = format_line(EXAMPLE_EPOCH, "socket-err", socket_err("abc", 2, "bad\r\nthing\nhere", 1.5))
        assert line == "2017-01-28T17:55:02Z socket-err: abc (2) bad thing here - 1.500\n"
        assert line.count("\n") == 1

    def test_expired_msg(self) -> None:
        """``expired-msg: <id> was first received N seconds ago. deleting`` with whole seconds."""
        line = format_line(EXAMPLE_EPOCH, "expired-msg", expired_msg("m-1", 345601.9))
        assert (
            line == "2017-01-28T17:55:02Z expired-msg: m-1 was first received 345601 seconds ago. deleting\n"
        )

    def test_message_sent(self) -> None:
        """``message: sent to http://localhost:80/path``."""
        line = format_line(EXAMPLE_EPOCH, "message", message_sent("http://localhost:80/cron"))
        assert line == "2017-01-28T17:55:02Z message: sent to http://localhost:80/cron\n"


class TestWriter:
    """File handling: directory creation, immediate visibility, reopen, errors swallowed."""

    def writer(self, path: Path) -> StockLogWriter:
        return StockLogWriter(path, wall_clock=lambda: EXAMPLE_EPOCH)

    def test_creates_directory_and_lines_are_visible_at_once(self, tmp_path: Path) -> None:
        """No close needed: each line is flushed when written (line buffering)."""
        path = tmp_path / "var" / "log" / "aws-sqsd" / "default.log"
        writer = self.writer(path)
        writer.http_err("id1", 4, 504, 68.761)
        writer.socket_err("id2", 1, "Connection refused", 0.002)
        writer.expired_msg("id3", 400000)
        writer.message_sent("http://localhost:80/")
        assert path.read_text().splitlines() == [
            "2017-01-28T17:55:02Z http-err: id1 (4) 504 - 68.761",
            "2017-01-28T17:55:02Z socket-err: id2 (1) Connection refused - 0.002",
            "2017-01-28T17:55:02Z expired-msg: id3 was first received 400000 seconds ago. deleting",
            "2017-01-28T17:55:02Z message: sent to http://localhost:80/",
        ]
        writer.close()
        writer.close()

    def test_appends_to_existing_file(self, tmp_path: Path) -> None:
        """An existing log is appended to, never truncated."""
        path = tmp_path / "default.log"
        path.write_text("old line\n")
        writer = self.writer(path)
        writer.message_sent("http://localhost:80/")
        writer.close()
        assert path.read_text().splitlines()[0] == "old line"
        assert len(path.read_text().splitlines()) == 2

    def test_reopen_after_logrotate(self, tmp_path: Path) -> None:
        """After the file is moved away, reopen() makes the next line start a new file."""
        path = tmp_path / "default.log"
        writer = self.writer(path)
        writer.message_sent("http://a/")
        rotated = path.rename(tmp_path / "default.log.1")
        writer.reopen()
        writer.message_sent("http://b/")
        writer.close()
        assert rotated.read_text().endswith("sent to http://a/\n")
        assert path.read_text() == "2017-01-28T17:55:02Z message: sent to http://b/\n"

    def test_write_errors_never_raise_and_recover(self, tmp_path: Path) -> None:
        """An unusable path drops lines (counted) without raising; writing resumes once fixed."""
        blocker = tmp_path / "aws-sqsd"
        blocker.write_text("a file where the directory should be")
        writer = self.writer(blocker / "default.log")
        writer.http_err("id", 1, 500, 0.1)
        writer.http_err("id", 2, 500, 0.1)
        assert writer.dropped == 2
        blocker.unlink()
        writer.http_err("id", 3, 500, 0.1)
        writer.close()
        assert (blocker / "default.log").read_text() == "2017-01-28T17:55:02Z http-err: id (3) 500 - 0.100\n"

    def test_path_is_a_directory(self, tmp_path: Path) -> None:
        """Opening a directory as the log fails quietly."""
        writer = self.writer(tmp_path)
        writer.message_sent("http://x/")
        assert writer.dropped == 1

    @pytest.mark.parametrize("text", ["ünïcödé", "\udcff surrogate"])
    def test_unencodable_text_is_replaced_not_fatal(self, tmp_path: Path, text: str) -> None:
        """Text that UTF-8 cannot encode (lone surrogates) is replaced, not an error."""
        path = tmp_path / "default.log"
        writer = self.writer(path)
        writer.socket_err("id", 1, text, 0.0)
        writer.close()
        assert writer.dropped == 0
        assert path.read_text(encoding="utf-8").startswith("2017-01-28T17:55:02Z socket-err: id (1) ")
