"""The emulator's command-line flags, shared by ``python -m asqsd.emulator`` and ``asqsd emulator``.

Kept apart from the server so that building asqsd's parser imports no emulator code (``asqsd run``
must not load aiohttp.web or PyYAML for a subcommand it does not run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MAX_RECEIVE_COUNT = 3  # receives before a --dlq takes a message (the flag's default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's flags (shared by ``python -m asqsd.emulator`` and ``asqsd emulator``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9324, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--queue", action="append", default=[], help="create this queue at start (repeatable; .fifo for FIFO)"
    )
    parser.add_argument(
        "--dlq", default=None, help="create this dead-letter queue; every --queue gets a redrive policy to it"
    )
    parser.add_argument(
        "--max-receive-count",
        type=int,
        default=DEFAULT_MAX_RECEIVE_COUNT,
        help=f"receives before SQS moves a message to --dlq (default {DEFAULT_MAX_RECEIVE_COUNT})",
    )
    parser.add_argument(
        "--file", type=Path, default=None, help="YAML or JSON file of queues, attributes and redrive policies"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for fault injection")
    parser.add_argument(
        "--lenient-purge", action="store_true", help="allow PurgeQueue more than once a minute (AWS does not)"
    )
