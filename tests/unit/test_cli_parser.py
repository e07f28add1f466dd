"""The argument parser: every settings flag's help shows its choices and default; a misspelled
flag is the subcommand's error, with its usage and the closest flag."""

from __future__ import annotations

import pytest

from asqsd.cli.main import build_parser
from asqsd.config import Settings


def subcommand_help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


@pytest.mark.parametrize("command", ["run", "config", "local"])
def test_help_shows_choices_and_defaults(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """Defaults as the user writes them (true, 200, auto); choices of the enumerated settings."""
    text = subcommand_help(capsys, command)
    assert "Worker port (stock hidden key) (default: 80)" in text
    assert "(default: true)" in text  # heartbeat
    assert "'2xx', '200,204' (default: 200)" in text  # success_statuses, a set
    assert "one of auto, json, console (default: auto)" in text  # log_format
    assert "one of debug, info, warning, error (default: info)" in text
    assert "--strict" in text


def test_every_settings_flag_names_its_default() -> None:
    """A None default is either explained by the description or shown as unset."""
    parser = build_parser()
    run = next(a for a in parser._actions if a.dest == "command").choices["run"]  # type: ignore[index]
    run.complete()  # its arguments are added at first use
    helps = {action.dest: action.help or "" for action in run._actions}
    for name in Settings.model_fields:
        assert "default" in helps[name].lower(), name


@pytest.mark.parametrize("command", ["run", "config", "local"])
def test_misspelled_flag_shows_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """The error comes from ``asqsd <command>`` with its usage, naming the closest flag; exit 2."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--http-prot", "8080"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: asqsd {command} ")
    assert (
        f"asqsd {command}: error: unrecognized arguments: --http-prot 8080 (did you mean --http-port?)" in err
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["local", "--port", "9400", "--demo"], {"port": 9400, "demo": True, "queue": "default"}),
        (["cron", "trigger", "nightly", "--http-port", "81"], {"name": "nightly", "http_port": "81"}),
        (["pause", "--seconds", "30"], {"command": "pause", "seconds": 30.0}),
        (["emulator", "--queue", "a", "--queue", "b"], {"queue": ["a", "b"]}),
    ],
)
def test_each_subcommand_gets_its_arguments_when_used(argv: list[str], expected: dict[str, object]) -> None:
    args = vars(build_parser().parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_the_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "config", "local", "cron", "send", "emulator", "version", "pause", "status"):
        assert command in out


def test_valid_arguments_still_parse() -> None:
    args = build_parser().parse_args(["run", "--http-port", "8080", "--no-heartbeat", "--strict"])
    assert (args.command, args.http_port, args.heartbeat, args.strict) == ("run", "8080", False, True)
