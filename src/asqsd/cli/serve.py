"""``asqsd run``: load periodic tasks, configure logging, run one daemon with signals wired.

The first SIGTERM/SIGINT starts the graceful shutdown, a second forces it; SIGHUP reopens the
stock log file. The process-global parts (signal handlers, the event loop) live here and in
:mod:`asqsd.cli.main`, nowhere else.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from asqsd._compat import run as run_loop
from asqsd.cli.exits import EXIT_FAILURE, EXIT_OK, EXIT_STARTUP, config_error
from asqsd.cli.startup import COLLECTION
from asqsd.clients.sqs.endpoint import sqs_target
from asqsd.config import LoadedSettings, Settings
from asqsd.errors import ConfigError, StartupError
from asqsd.logs import configure_logging, get_logger
from asqsd.periodic.cron_yaml import CronTask
from asqsd.periodic.runner import load_tasks


def run_command(loaded: LoadedSettings) -> int:
    """``asqsd run``."""
    settings = loaded.settings
    if settings.queue_url is None:
        hint = "set --queue-url, ASQSD_QUEUE_URL, WorkerQueueURL or queue_url in --config"
        return config_error([f"queue_url is required: {hint}"])
    try:
        cron_path, tasks = load_tasks(settings, loaded.warnings)
        session = check_sqs_target(loaded)
    except ConfigError as exc:
        return config_error(exc.problems)
    log = start_logging(settings, loaded.warnings, cron_path, tasks)
    import asqsd.daemon  # noqa: F401  (loaded here, with collection still paused; serve uses it)

    COLLECTION.resume()  # start-up's objects are loaded: frozen, then collection resumes
    try:
        return run_loop(serve(settings, tasks=tasks, botocore_session=session), settings.loop)
    except StartupError as exc:
        log.error("startup-failed", error=str(exc))
        return EXIT_STARTUP
    except ImportError as exc:
        return config_error([f"loop={settings.loop}: {exc}"])


def start_logging(
    settings: Settings, warnings: Sequence[str], cron_path: Path | None, tasks: Sequence[CronTask]
) -> Any:
    """Configure logging, then log the config warnings and the cron.yaml in use (run and local)."""
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger("cli")
    for warning in warnings:
        log.warning("config-warning", detail=warning)
    if cron_path is not None:
        log.info("cron-loaded", file=str(cron_path), tasks=len(tasks))
    return log


def check_sqs_target(loaded: LoadedSettings) -> Any:
    """Raise ConfigError now, before anything starts, if the SQS region cannot be resolved (the
    daemon's client factory resolves it again the same way); the session it read (botocore's
    configuration, botocore.session imported only when needed), for the daemon to reuse."""
    from asqsd.clients.sqs.aws_config import AwsConfigSession

    session = AwsConfigSession()
    sqs_target(loaded.settings, session, os.environ, loaded.sources)
    return session


async def serve(
    settings: Settings,
    until: Coroutine[Any, Any, bool] | None = None,
    *,
    tasks: Sequence[CronTask] = (),
    create_registry_table: bool = False,
    botocore_session: Any = None,
) -> int:
    """Run a daemon with SIGTERM/SIGINT wired to a graceful, then forced, stop.

    ``until``: an optional coroutine (the demo) whose end stops the daemon; a False result is exit 1.
    ``botocore_session``: the session :func:`check_sqs_target` read, reused by the daemon.
    """
    from asqsd.daemon import Daemon

    daemon = Daemon(
        settings, tasks=tasks, create_registry_table=create_registry_table, botocore_session=botocore_session
    )
    watcher = asyncio.create_task(_stop_when_done(daemon, until)) if until is not None else None
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        get_logger("cli").info("signal", signal=signal.Signals(signum).name, count=len(received))
        daemon.request_stop(force=len(received) > 1)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, daemon.reopen_logs)  # logrotate's postrotate
    try:
        await daemon.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        if watcher is not None and not watcher.done():
            watcher.cancel()
    if isinstance(daemon.failure, StartupError):
        get_logger("cli").error("startup-failed", error=str(daemon.failure))
        return EXIT_STARTUP
    if daemon.failure is not None:
        return EXIT_FAILURE
    if watcher is not None and watcher.done() and not watcher.cancelled() and watcher.result() is False:
        return EXIT_FAILURE
    if daemon.forced and received:
        return 128 + received[-1]
    return EXIT_OK


async def _stop_when_done(daemon: Any, until: Coroutine[Any, Any, bool]) -> bool:
    await daemon.ready.wait()
    try:
        return await until
    finally:
        daemon.request_stop()
