"""The command line: ``asqsd run | local | config | version``; the only process-global state."""

from asqsd.cli.main import main

__all__ = ["main"]
