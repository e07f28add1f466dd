"""`asqsd send`: its arguments (attributes, body sources, FIFO ids, batching) as pure logic."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from asqsd.cli.send import (
    BATCH_SIZE,
    SendRequest,
    UsageError,
    add_arguments,
    batches,
    entries,
    local_credentials,
    parse_attribute,
    read_body,
    send_request,
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("kind=load", ("kind", {"DataType": "String", "StringValue": "load"})),
        ("eq=a=b", ("eq", {"DataType": "String", "StringValue": "a=b"})),
        ("n:Number=42", ("n", {"DataType": "Number", "StringValue": "42"})),
        ("b:Binary=aGk=", ("b", {"DataType": "Binary", "BinaryValue": "aGk="})),
        ("j:String.json={}", ("j", {"DataType": "String.json", "StringValue": "{}"})),
    ],
)
def test_attributes_take_an_optional_type(spec: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_attribute(spec) == expected


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("novalue", "expected NAME=VALUE"),
        ("=x", "expected NAME=VALUE"),
        ("x:Blob=1", "type 'Blob' is not one of String, Number, Binary"),
        ("b:Binary=not base64!", "written in base64"),
    ],
)
def test_bad_attributes_are_named(spec: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as error:
        parse_attribute(spec)
    assert repr(spec) in str(error.value)


def test_body_from_argument_file_or_stdin(tmp_path: Path) -> None:
    file = tmp_path / "m.json"
    file.write_text('{"a": 1}')
    assert read_body("hi", None, io.StringIO("unused")) == "hi"
    assert read_body(None, file, io.StringIO("unused")) == '{"a": 1}'
    assert read_body("-", None, io.StringIO("from stdin")) == "from stdin"
    with pytest.raises(UsageError, match="not both"):
        read_body("hi", file, io.StringIO())
    with pytest.raises(UsageError, match="no message body"):
        read_body(None, None, io.StringIO())
    with pytest.raises(UsageError, match="cannot read"):
        read_body(None, tmp_path / "missing", io.StringIO())


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["hi", "--count", "0"], "--count 0: must be 1 to 10000"),
        (["hi", "--count", "10001"], "--count 10001"),
        (["hi", "--delay", "901"], "--delay 901: SQS allows 0 to 900"),
    ],
)
def test_counts_and_delays_are_bounded(argv: list[str], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        send_request(parse(*argv), io.StringIO())


def test_copies_get_numbered_dedup_ids_and_random_ones_on_fifo() -> None:
    """--dedup-id with --count gets -1, -2 ...; a FIFO queue without it gets a distinct id each."""
    numbered = list(entries(SendRequest("b", {}, "g", "d", None, 3), fifo=True))
    assert [e["MessageDeduplicationId"] for e in numbered] == ["d-1", "d-2", "d-3"]
    assert {e["MessageGroupId"] for e in numbered} == {"g"}
    random_ids = {e["MessageDeduplicationId"] for e in entries(SendRequest("b", {}, "g", count=5), fifo=True)}
    assert len(random_ids) == 5
    (standard,) = entries(
        SendRequest("b", {"k": {"DataType": "String", "StringValue": "v"}}, delay_s=5), False
    )
    assert standard == {
        "MessageBody": "b",
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
        "DelaySeconds": 5,
    }


def test_batches_hold_at_most_ten() -> None:
    sizes = [len(batch) for batch in batches(entries(SendRequest("b", {}, count=23), fifo=False))]
    assert sizes == [BATCH_SIZE, BATCH_SIZE, 3]


def test_loopback_credentials_are_the_environments_or_fixed_local_ones() -> None:
    assert local_credentials({}).access_key == "local"
    given = local_credentials({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    assert (given.access_key, given.secret_key, given.token) == ("k", "s", None)
    assert local_credentials({"AWS_ACCESS_KEY_ID": "k"}).access_key == "local"  # no secret: not usable
