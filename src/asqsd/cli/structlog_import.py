"""Import structlog without the optional console extras it probes for (rich, better_exceptions, colorama).

structlog imports each of them, when installed, to pick a default exception formatter for its
``ConsoleRenderer`` and a repr for its structured tracebacks. asqsd uses neither: exceptions are
formatted to plain text by ``format_exc_info`` before any renderer runs (:mod:`asqsd.logs`), so the
daemon's output is the same with or without them. rich alone costs 20-40 ms of CPU and about 4 MiB at
every start wherever something else installed it (import-linter brings it into a test virtualenv),
and structlog's ConsoleRenderer would warn at each logged exception that ``format_exc_info`` hides
its pretty tracebacks. Called once, by the command-line entry point, before anything imports
structlog.
"""

from __future__ import annotations

import sys

_EXTRAS = ("rich", "better_exceptions", "colorama")


def import_structlog_without_extras() -> None:
    """Import structlog with its optional extras unimportable for that one import, then restore them.

    A ``None`` entry in ``sys.modules`` makes ``import name`` raise ImportError, which is what
    structlog does without the package. Nothing changes when structlog is already imported (a test
    process, an embedding application) or when an extra already is (someone imported it on purpose).
    """
    if "structlog" in sys.modules:
        return
    blocked = [name for name in _EXTRAS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401  (imported for its side effect: the cached module)
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
