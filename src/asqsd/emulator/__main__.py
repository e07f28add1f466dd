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

from asqsd.emulator.args import add_arguments
from asqsd.emulator.queue_spec import (
    QueueSpec,
    QueueSpecError,
    create_queues,
    load_queue_file,
    specs_from_flags,
)
from asqsd.emulator.server import Emulator

READY_PREFIX = "asqsd-emulator listening on"


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
