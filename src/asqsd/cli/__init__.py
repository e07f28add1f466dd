"""The command line: ``asqsd run | local | config | version``; the only process-global state."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``asqsd`` entry point: the start-up settings of :mod:`asqsd.cli.startup`, then the commands."""
    from asqsd.cli.startup import COLLECTION, import_structlog_without_extras, pydantic_plugins_off

    COLLECTION.pause()
    try:
        import_structlog_without_extras()
        with pydantic_plugins_off():  # asqsd.cli.main imports asqsd.config, which builds the models
            from asqsd.cli.main import main as run_cli

        return run_cli(argv)
    finally:
        COLLECTION.resume()  # if no command did it yet


__all__ = ["main"]
