"""The client micro-benchmarks' shared parts (benchmarks/micro/microbench.py) and their py-spy rules."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from benchmarks.micro import http_client_cost, microbench, sqs_client_cost

# --- command line ---------------------------------------------------------------------------------


def test_the_parser_hides_serve_and_adds_the_round_options() -> None:
    parser = microbench.base_parser("The docstring.")
    microbench.add_round_arguments(parser, ("a", "b"), time_cap_s=7.0)
    args = parser.parse_args([])
    assert (args.serve, args.rounds, args.time_cap, args.variants) == (None, 3, 7.0, ["a", "b"])
    assert parser.parse_args(["--serve", "8080", "--variants", "b"]).variants == ["b"]
    help_text = parser.format_help()
    assert "The docstring." in help_text
    assert "--serve" not in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["--variants", "c"])


def test_side_modes_run_alone_and_say_so() -> None:
    calls: list[object] = []
    args = argparse.Namespace(serve=None, spy_summary=None)
    assert microbench.run_side_mode(args, calls.append, calls.append) is False
    args.serve = 8080
    assert microbench.run_side_mode(args, calls.append, calls.append) is True
    args.serve, args.spy_summary = None, Path("raw.txt")
    assert microbench.run_side_mode(args, calls.append, calls.append) is True
    assert calls == [8080, Path("raw.txt")]


# --- the server in a child process ----------------------------------------------------------------


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A module ``python -m`` finds in the child (which runs in the checkout): its name."""
    (tmp_path / "microbench_test_server.py").write_text(textwrap.dedent(body))
    path = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    return "microbench_test_server"


def test_the_server_process_is_ready_when_yielded_and_gone_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(
        tmp_path,
        monkeypatch,
        """
        import sys
        from http.server import BaseHTTPRequestHandler, HTTPServer

        class Ping(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        assert sys.argv[1] == "--serve"
        HTTPServer(("127.0.0.1", int(sys.argv[2])), Ping).serve_forever()
        """,
    )
    with (
        microbench.server_process(module, "ping server") as url,
        urllib.request.urlopen(f"{url}/ping", timeout=5) as response,
    ):
        assert response.read() == b"ok"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/ping", timeout=1)


def test_a_server_that_dies_is_reported_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(tmp_path, monkeypatch, 'import sys\nsys.exit("no port for you")\n')
    with (
        pytest.raises(RuntimeError, match="stub server did not start") as failure,
        microbench.server_process(module, "stub server"),
    ):
        pytest.fail("yielded a server that never started")
    assert "no port for you" in str(failure.value)


# --- measuring -------------------------------------------------------------------------------------


def test_rounds_are_interleaved() -> None:
    assert list(microbench.interleaved(2, ["a", "b", "c"])) == ["a", "b", "c", "a", "b", "c"]
    assert list(microbench.interleaved(0, ["a"])) == []


async def test_measure_makes_the_calls_and_names_the_keys_after_the_unit() -> None:
    made = 0

    async def call() -> None:
        nonlocal made
        made += 1

    result = await microbench.measure(call, 25, concurrency=4, cap_s=10.0, unit="post")
    assert made == 25
    assert list(result) == [
        "posts",
        "cpu_us_per_post",
        "user_us_per_post",
        "system_us_per_post",
        "posts_per_s",
        "wall_s",
    ]
    assert result["posts"] == 25
    assert result["cpu_us_per_post"] >= 0


def test_cpu_summary_has_min_median_then_the_asked_medians() -> None:
    runs = [
        {"cpu_us_per_call": 30.0, "system_us_per_call": 3.0},
        {"cpu_us_per_call": 10.0, "system_us_per_call": 1.0},
        {"cpu_us_per_call": 20.0, "system_us_per_call": 5.0},
    ]
    summary = microbench.cpu_summary(runs, "call", ["system_us_per_call"])
    assert summary == {
        "cpu_us_per_call_min": 10.0,
        "cpu_us_per_call_median": 20.0,
        "system_us_per_call_median": 3.0,
    }
    assert list(summary) == ["cpu_us_per_call_min", "cpu_us_per_call_median", "system_us_per_call_median"]


# --- the result file -------------------------------------------------------------------------------


def test_the_environment_names_extra_packages_before_aiohttp_and_uvloop() -> None:
    env = microbench.environment(botocore="1.2.3")
    assert list(env) == ["python", "cpus", "botocore", "aiohttp", "uvloop", "event_loop"]
    assert env["botocore"] == "1.2.3"
    assert env["event_loop"] == "uvloop"


def test_the_result_keeps_measuring_options_and_sections_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deeper" / "result.json"
    args = argparse.Namespace(
        serve=None, calls=5, output=out, profile=False, no_breakdown=True, spy_summary=None, rounds=2
    )
    microbench.write_result(out, args, {"python": "3"}, results=[1], lean_steps_us={})
    document = json.loads(out.read_text())
    assert list(document) == ["command", "environment", "settings", "results", "lean_steps_us"]
    assert document["command"].startswith(Path(sys.executable).name + " ")
    assert document["environment"] == {"python": "3"}
    assert document["settings"] == {"calls": 5, "rounds": 2}
    assert out.read_text().endswith("}\n")
    assert capsys.readouterr().err == f"\nwrote {out}\n"


# --- py-spy profiles -------------------------------------------------------------------------------

RULES = (("parsing", "Parser."), ("parsing", "lib/http.py"), ("pool", "Pool."))


def test_the_innermost_matching_frame_wins_and_rule_order_breaks_ties() -> None:
    assert microbench.spy_bucket(["main", "Pool.get (lib/http.py:1)"], RULES, "other") == "parsing"
    assert microbench.spy_bucket(["Pool.get (x.py:1)", "Parser.feed (y.py:2)"], RULES, "other") == "parsing"
    assert microbench.spy_bucket(["Parser.feed (y.py:2)", "Pool.get (x.py:1)"], RULES, "other") == "pool"
    assert microbench.spy_bucket(["main", "idle"], RULES, "other") == "other"


def test_spy_counts_skip_startup_and_apply_aliases() -> None:
    lines = [
        "<module> (a.py:1);main (a.py:9);Pool.get (x.py:1) 3",
        "<module> (a.py:1);<module> (b.py:1);Parser.feed (y.py:2) 2",  # an import: start-up
        "<module> (a.py:1);_find_and_load (<frozen>:1);Pool.get (x.py:1) 1",  # start-up too
        "<module> (a.py:1);write (w.py:7) 4",
        " 5",  # no Python frame (native code holding the GIL)
    ]
    everything = microbench.spy_counts(lines, RULES, "other")
    assert everything == {"pool": 4, "parsing": 2, "other": 9}
    aliases = {"write (w.py:7)": "Pool.write"}
    counts = microbench.spy_counts(lines, RULES, "other", skip_startup=True, aliases=aliases)
    assert counts == {"pool": 7, "other": 5}


def test_spy_table_is_largest_first_with_the_total_in_the_heading() -> None:
    table = microbench.spy_table("Where it goes ({total} samples)", {"a": 1, "b": 3})
    assert table.splitlines() == [
        "| Where it goes (4 samples) | share |",
        "|---|---:|",
        "| b | 75.0% |",
        "| a | 25.0% |",
    ]


def _sqs_bucket(*frames: str) -> str:
    module = "<module> (benchmarks/micro/sqs_client_cost.py:1)"
    return microbench.spy_bucket([module, *frames], SQS_RULES, "-")


SQS_RULES = sqs_client_cost.SPY_BUCKETS
TRANSPORT = "lean transport: connection + pool"
PARSING = "lean transport: parse the response (http1.ResponseParser)"


def test_sqs_profiles_put_http1_connection_and_pool_time_on_the_transport() -> None:
    pool = (
        "LeanSQS._call (asqsd/clients/sqs/lean_impl.py:500)",
        "KeepAlivePool._request (asqsd/clients/http1/pool.py:618)",
    )
    assert _sqs_bucket(*pool) == TRANSPORT
    assert _sqs_bucket(*pool, "KeepAlivePool._exchange (asqsd/clients/http1/pool.py:649)") == TRANSPORT
    assert _sqs_bucket(*pool, "Connection.send (asqsd/clients/http1/connection.py:477)") == TRANSPORT
    assert _sqs_bucket("Connection.data_received (asqsd/clients/http1/connection.py:436)") == TRANSPORT
    parser = "ResponseParser.feed (asqsd/clients/http1/parser.py:140)"
    assert _sqs_bucket("Connection.data_received (asqsd/clients/http1/connection.py:436)", parser) == PARSING
    assert _sqs_bucket(parser, "_content_length (asqsd/clients/http1/parser.py:340)") == PARSING
    assert not any("_SQSConnection" in needle for _, needle in SQS_RULES)


def test_http_profiles_count_the_send_line_as_the_socket_write() -> None:
    write_frame = http_client_cost.write_frame()
    lines = [
        f"<module> (benchmarks/micro/http_client_cost.py:1);{write_frame} 2",
        "<module> (benchmarks/micro/http_client_cost.py:1);"
        "Connection.send (asqsd/clients/http1/connection.py:1) 1",
    ]
    counts = microbench.spy_counts(lines, http_client_cost.SPY_BUCKETS, "-", aliases={write_frame: "<write>"})
    assert counts == {
        "socket send: transport.write, incl. the send syscall": 2,
        "connection protocol: data_received, send, timer": 1,
    }
