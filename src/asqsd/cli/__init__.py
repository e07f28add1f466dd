"""The command line: ``asqsd run | local | config | version``; the only process-global state."""

from asqsd.cli.structlog_import import import_structlog_without_extras

# Before anything imports structlog (asqsd.cli.main does, through asqsd.logs): see the module.
import_structlog_without_extras()

from asqsd.cli.main import main  # noqa: E402  (after the structlog import above, on purpose)

__all__ = ["main"]
