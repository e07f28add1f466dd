"""Log redaction: secrets, receipt handles and access key ids never appear in full."""

from __future__ import annotations

import io
import json

import structlog

from asqsd.logs import configure_logging, printable_bytes, redact, short_receipt


def test_redact_processor() -> None:
    """Secret-looking keys masked, receipt handles cut, access key ids hidden in any string."""
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "aws_secret_access_key": "wJalrXUtnFEMI",
            "session_token": "tok",
            "receipt_handle": "AQEB" + "x" * 300,
            "detail": "signed with AKIAIOSFODNN7EXAMPLE today",
        },
    )
    assert event["aws_secret_access_key"] == "****"
    assert event["session_token"] == "****"
    assert event["receipt_handle"] == short_receipt("AQEB" + "x" * 300)
    assert len(event["receipt_handle"]) <= 13
    assert "AKIAIOSFODNN7EXAMPLE" not in event["detail"]


def test_json_output_when_not_a_terminal() -> None:
    """configure_logging renders JSON lines on a non-tty stream, filtered by level."""
    stream = io.StringIO()
    configure_logging("warning", "auto", stream)
    try:
        log = structlog.get_logger(component="t")
        log.info("hidden")
        log.warning("shown", receipt_handle="R" * 100)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["shown"]
        assert lines[0]["receipt_handle"] == short_receipt("R" * 100)
        assert lines[0]["level"] == "warning"
    finally:
        structlog.reset_defaults()


def test_printable_bytes_escapes_what_could_break_a_log_line() -> None:
    """A worker's bytes become one line: controls escaped, invalid UTF-8 replaced, text kept."""
    assert printable_bytes(b"plain text, caf\xc3\xa9") == "plain text, café"
    assert printable_bytes(b"a\r\nforged-line\x1b[2J\x00\t") == "a\\r\\nforged-line\\x1b[2J\\x00\\t"
    assert printable_bytes(b"cut \xe2\x82") == "cut \ufffd"
    assert printable_bytes(b"") == ""
