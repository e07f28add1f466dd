"""``python -m asqsd.emulator --host 127.0.0.1 --port 9324 [--queue NAME ...] [--dlq NAME] [--file F]``.

Prints one ready line (``asqsd-emulator listening on http://HOST:PORT``) once it accepts connections
and its queues exist, then one ``queue NAME URL`` line per queue created, and exits with status 0
on SIGTERM or SIGINT. ``asqsd emulator`` is the same command for users (loopback addresses only).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from asqsd.emulator.queue_spec import (
    DEFAULT_MAX_RECEIVE_COUNT,
    QueueSpec,
    QueueSpecError,
    create_queues,
    load_queue_file,
    specs_from_flags,
)
from asqsd.emulator.server import Emulator

READY_PREFIX = "asqsd-emulator listening on"


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m asqsd.emulator", description=__doc__)
    add_arguments(parser)
    return parser.parse_args(argv)


def queue_specs(args: argparse.Namespace) -> list[QueueSpec]:
    """The queues the flags and ``--file`` ask for; QueueSpecError for bad input."""
    specs = specs_from_flags(args.queue, args.dlq, args.max_receive_count)
    if args.file is not None:
        specs.extend(load_queue_file(args.file))
    return specs


async def serve(args: argparse.Namespace, specs: Sequence[QueueSpec]) -> None:
    """Run until SIGTERM or SIGINT; raises QueueSpecError for queues it cannot create."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    emulator = Emulator(args.host, args.port, seed=args.seed, strict_purge=not args.lenient_purge)
    async with emulator:
        urls = create_queues(emulator, specs)
        print(f"{READY_PREFIX} {emulator.endpoint_url}", flush=True)
        for name, url in urls.items():
            print(f"queue {name} {url}", flush=True)
        await stop.wait()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(args: argparse.Namespace, prog: str) -> int:
    """Serve ``args``; a queue that cannot be created or a port that cannot be bound is one line, exit 2."""
    try:
        specs = queue_specs(args)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(args, specs))
    except QueueSpecError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv), "python -m asqsd.emulator")


if __name__ == "__main__":
    sys.exit(main())
