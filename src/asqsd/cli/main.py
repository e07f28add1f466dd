"""Command-line entry point: the parser and the dispatch to ``asqsd run | local | send | emulator |
config | cron | version`` and the control commands ``asqsd pause | resume | status``
(:mod:`asqsd.cli.control`).

The exit codes are in :mod:`asqsd.cli.exits`; ``asqsd run`` itself is :mod:`asqsd.cli.serve`.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from asqsd import __version__
from asqsd.cli.exits import EXIT_OK, config_error
from asqsd.cli.serve import run_command, start_logging
from asqsd.cli.startup import COLLECTION
from asqsd.clients.sqs.endpoint import regional_endpoint, sqs_target
from asqsd.config import LoadedSettings, Settings, describe_settings, load_settings
from asqsd.errors import ConfigError


def _field_choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return None


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per settings field, generated from the model: its description, choices and
    default are the help."""
    group = parser.add_argument_group("settings (override env and config file)")
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if info.annotation is bool:
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=_help(info)
            )
            continue
        group.add_argument(
            flag,
            dest=name,
            default=None,
            metavar=name.upper(),
            choices=_field_choices(info.annotation),
            help=_help(info),
        )
    parser.add_argument(
        "--config", type=Path, default=None, help="stock YAML config file, e.g. /etc/aws-sqsd.d/default.yaml"
    )
    parser.add_argument(
        "--strict", action="store_true", help="unknown keys in --config are errors, not warnings"
    )


def _help(info: FieldInfo) -> str:
    """A flag's help: the description, then its choices and its default as the user writes them."""
    text = (info.description or "").rstrip(".")
    choices = _field_choices(info.annotation)
    if choices:
        text += f"; one of {', '.join(choices)}"
    default = info.get_default(call_default_factory=True)
    if default is not None:
        text += f" (default: {_shown(default)})"
    elif "default" not in text.lower():
        text += " (default: unset)"
    return text.replace("%", "%%")  # argparse formats help strings with %


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ",".join(str(v) for v in sorted(value))
    return str(value)


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: arguments it does not know are its error (its usage, a hint), not the
    top-level parser's, which would print the usage of ``asqsd`` itself.

    Its arguments are added when it is first used (:meth:`add_later`): a command line picks one
    subcommand, and adding every subcommand's ~70 settings flags, with the modules that describe
    ``send``, ``emulator`` and the control commands, cost ~10 ms at every start.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later: list[Callable[[argparse.ArgumentParser], None]] = []

    def add_later(self, add: Callable[[argparse.ArgumentParser], None]) -> _SubcommandParser:
        """Have ``add(self)`` add arguments before this parser first parses or prints help."""
        self._later.append(add)
        return self

    def complete(self) -> _SubcommandParser:
        """Add the arguments :meth:`add_later` deferred (once; in the order they were deferred)."""
        later, self._later = self._later, []
        for add in later:
            add(self)
        return self

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.complete()
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(_unrecognized(self, extra))
        return parsed, extra

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """The unknown arguments, with the closest flag of ``parser`` for the first one."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    flag = extra[0].split("=", 1)[0]
    if flag.startswith("--"):
        known = [option for action in parser._actions for option in action.option_strings]
        close = difflib.get_close_matches(flag, known, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
    return message


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree; each subcommand's arguments are added when it is used."""
    parser = argparse.ArgumentParser(
        prog="asqsd", description="Elastic Beanstalk worker SQS daemon, in asyncio."
    )
    parser.add_argument("--version", action="version", version=f"asqsd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_SubcommandParser)
    commands.add_parser("run", help="run the daemon").add_later(add_settings_flags)
    commands.add_parser("config", help="print the effective settings and their sources").add_later(
        add_settings_flags
    )
    commands.add_parser(
        "local", help="embedded SQS emulator + daemon on 127.0.0.1, no AWS account"
    ).add_later(_add_local_arguments)
    commands.add_parser("cron", help="list cron.yaml's periodic tasks, or enqueue one now").add_later(
        _add_cron_parsers
    )
    commands.add_parser("send", help="send messages to a queue (default: asqsd local's)").add_later(
        _add_send_arguments
    )
    commands.add_parser(
        "emulator", help="run the SQS emulator alone on 127.0.0.1, with its queues"
    ).add_later(_add_emulator_arguments)
    commands.add_parser("version", help="print the version")
    for name, help_text in _CONTROL_COMMANDS.items():
        commands.add_parser(name, help=help_text).add_later(functools.partial(_add_control_arguments, name))
    return parser


def _add_local_arguments(local: argparse.ArgumentParser) -> None:
    """``asqsd local``: the emulator's port and queue, the demo, and every settings flag."""
    local.add_argument("--port", type=int, default=9324, help="emulator port on 127.0.0.1 (default 9324)")
    local.add_argument("--queue", default="default", help="queue name (default 'default'; .fifo for FIFO)")
    local.add_argument(
        "--max-receive-count", type=int, default=3, help="receives before a message is dead-lettered"
    )
    local.add_argument(
        "--demo", action="store_true", help="start a demo worker, send samples, stop when shown"
    )
    add_settings_flags(local)


def _add_cron_parsers(cron: argparse.ArgumentParser) -> None:
    """``asqsd cron list`` and ``asqsd cron trigger <name>`` (:mod:`asqsd.cli.cron`)."""
    commands = cron.add_subparsers(dest="cron_command", required=True, parser_class=_SubcommandParser)
    commands.add_parser("list", help="name, URL, schedule and next run (UTC) of every task").add_later(
        add_settings_flags
    )
    trigger = commands.add_parser(
        "trigger", help="enqueue one run of a task now on the configured queue, as the scheduler would"
    )
    trigger.add_argument("name", help="the task's name in cron.yaml")
    trigger.add_later(add_settings_flags)


def _add_send_arguments(send: argparse.ArgumentParser) -> None:
    """``asqsd send``: one of the two helpers of a local development loop."""
    from asqsd.cli.send import add_arguments

    add_arguments(send)


def _add_emulator_arguments(emulator: argparse.ArgumentParser) -> None:
    """``asqsd emulator``: the other one."""
    from asqsd.emulator.args import add_arguments

    add_arguments(emulator)


# ``asqsd pause | resume | status``: they find the health server from the settings flags.
_CONTROL_COMMANDS = {
    "pause": "pause receiving on a running daemon (in-flight POSTs finish)",
    "resume": "resume receiving on a running daemon",
    "status": "show a running daemon's intake state and the messages it holds",
}


def _add_control_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    from asqsd.cli.control import add_control_arguments

    add_control_arguments(parser, name)
    add_settings_flags(parser)


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None for the ones not given)."""
    return {name: getattr(args, name, None) for name in Settings.model_fields}


def load(args: argparse.Namespace) -> LoadedSettings:
    """Settings from flags, environment and the config file."""
    return load_settings(cli_values(args), os.environ, args.config, strict=getattr(args, "strict", False))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and return the exit code."""
    args = build_parser().parse_args(argv)
    if args.command != "run":
        COLLECTION.resume()  # only `asqsd run` starts with collection paused until its daemon is loaded
    if args.command == "version":
        print(f"asqsd {__version__}")
        return EXIT_OK
    if args.command == "send":
        from asqsd.cli.send import main_send

        return main_send(args)
    if args.command == "emulator":
        return emulator_command(args)
    try:
        loaded = load(args)
    except ConfigError as exc:
        return config_error(exc.problems)
    if args.command == "config":
        return print_config(loaded)
    if args.command == "local":
        return local_command(args, loaded)
    if args.command == "cron":
        from asqsd.cli.cron import cron_command

        return cron_command(args, loaded)
    if args.command in ("pause", "resume", "status"):
        from asqsd.cli.control import control_command

        return control_command(args, loaded.settings)
    return run_command(loaded)


def local_command(args: argparse.Namespace, loaded: LoadedSettings) -> int:
    """``asqsd local``: emulator + daemon; the flags given override the local defaults."""
    from asqsd.cli.local import LocalOptions, load_local_tasks, main_local, refused_flags

    settings = loaded.settings
    overrides = {
        name: getattr(settings, name) for name, source in loaded.sources.items() if source != "default"
    }
    refused = refused_flags(loaded.sources, overrides, demo=args.demo)
    if refused:
        return config_error(refused)
    try:
        cron_path, tasks = load_local_tasks(settings, loaded.warnings)
    except ConfigError as exc:
        return config_error(exc.problems)
    start_logging(settings, loaded.warnings, cron_path, tasks)
    options = LocalOptions(args.port, args.queue, args.max_receive_count, args.demo)
    return main_local(overrides, options, settings.loop, tasks)


def emulator_command(args: argparse.Namespace) -> int:
    """``asqsd emulator``: ``python -m asqsd.emulator`` on loopback addresses only (it has no
    authentication: anyone who reaches it can read every message)."""
    from asqsd.addresses import is_loopback_host
    from asqsd.emulator.__main__ import run

    if not is_loopback_host(args.host):
        return config_error([f"--host {args.host}: asqsd emulator listens on loopback addresses only"])
    return run(args, "asqsd emulator")


def print_config(loaded: LoadedSettings) -> int:
    """``asqsd config``: key, value, source, with the region and SQS endpoint the daemon would use;
    then where AWS credentials would come from. Exit 2 when the region cannot be resolved."""
    rows = describe_settings(loaded)
    warnings = list(loaded.warnings)
    problems: list[str] = []
    if loaded.settings.queue_url is not None:
        try:
            rows = _with_sqs_target(rows, loaded, warnings)
        except ConfigError as exc:
            problems = exc.problems
    width = max(len(key) for key, _value, _source in rows)
    for key, value, source in rows:
        print(f"{key:<{width}}  {value}  [{source}]")
    print(f"{'credentials':<{width}}  {_credential_source()}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config_error(problems) if problems else EXIT_OK


def _with_sqs_target(
    rows: list[tuple[str, str, str]], loaded: LoadedSettings, warnings: list[str]
) -> list[tuple[str, str, str]]:
    """``rows`` with the effective region and endpoint (and their sources) in place of the settings."""
    import botocore.session

    session = botocore.session.get_session()
    target = sqs_target(loaded.settings, session, os.environ, loaded.sources)
    endpoint = target.endpoint_url or regional_endpoint(session, target.region)
    if target.region_conflict is not None:
        warnings.append(target.region_conflict)
    effective = {
        "region": (target.region, target.region_source),
        "endpoint_url": (endpoint, target.endpoint_source),
    }
    return [(key, *effective.get(key, (value, source))) for key, value, source in rows]


def _credential_source() -> str:
    """botocore's credential chain, masked: which provider, and the key id's first 4 characters."""
    import botocore.session

    try:
        credentials = botocore.session.get_session().get_credentials()
    except Exception as exc:  # noqa: BLE001 - any provider failure is reported, not raised
        return f"error: {type(exc).__name__}"
    if credentials is None:
        return "none found"
    return f"{credentials.method} (access key {credentials.access_key[:4]}****)"
