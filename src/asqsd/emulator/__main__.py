"""``python -m asqsd.emulator --host 127.0.0.1 --port 9324 [--queue NAME ...]``.

Prints one ready line (``asqsd-emulator listening on http://HOST:PORT``) once it accepts connections,
and exits with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence

from asqsd.emulator.server import Emulator

READY_PREFIX = "asqsd-emulator listening on"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m asqsd.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9324, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--queue", action="append", default=[], help="create this queue at start (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for fault injection")
    parser.add_argument(
        "--lenient-purge", action="store_true", help="allow PurgeQueue more than once a minute (AWS does not)"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    emulator = Emulator(
        args.host, args.port, queues=args.queue, seed=args.seed, strict_purge=not args.lenient_purge
    )
    async with emulator:
        print(f"{READY_PREFIX} {emulator.endpoint_url}", flush=True)
        await stop.wait()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
