"""What the command-line entry point does before it imports the rest of asqsd, to start faster.

Nearly all of ``asqsd run``'s start-up is importing modules (docs/daemon.md, start-up), so three
things are settled first, each the process's own business and nothing a library should do:

* **Garbage collection is paused** until the daemon's modules are loaded, then the objects made so
  far are frozen (``gc.freeze``): they live as long as the process, and collecting them while they
  are being made, and at every full collection after, is wasted work (about 5 ms at start).
* **structlog is imported without the console extras it probes for** (rich, better_exceptions,
  colorama). asqsd uses none of them: exceptions are formatted to plain text by ``format_exc_info``
  before any renderer runs (:mod:`asqsd.logs`), so the output is the same with or without them. rich
  alone costs 20-40 ms and about 4 MiB wherever something else installed it, and structlog's console
  renderer would warn at each logged exception that ``format_exc_info`` hides its pretty tracebacks.
* **pydantic plugins are not looked for** while asqsd's settings models are built, unless
  ``PYDANTIC_DISABLE_PLUGINS`` is set: the look-up reads the entry points of every installed
  distribution (2-7 ms), and a plugin would only observe asqsd's own configuration.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterator

_EXTRAS = ("rich", "better_exceptions", "colorama")
_PYDANTIC_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"


class CollectionPause:
    """Garbage collection paused by the entry point, resumed (with start-up's objects frozen) once.

    Resuming is a no-op unless this object paused collection: a test or an embedding application
    calling into the CLI keeps its own collector as it was.
    """

    def __init__(self) -> None:
        self._paused = False

    def pause(self) -> None:
        """Stop automatic collection (when it is on)."""
        if gc.isenabled():
            gc.disable()
            self._paused = True

    def resume(self) -> None:
        """Freeze every object made so far and collect automatically again."""
        if self._paused:
            self._paused = False
            gc.freeze()
            gc.enable()


COLLECTION = CollectionPause()  # the process's one pause: the entry point is its only owner


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


@contextlib.contextmanager
def pydantic_plugins_off() -> Iterator[None]:
    """``PYDANTIC_DISABLE_PLUGINS=__all__`` inside the block, unless the user set the variable;
    restored after, so no child process inherits it."""
    if _PYDANTIC_PLUGINS in os.environ:
        yield
        return
    os.environ[_PYDANTIC_PLUGINS] = "__all__"
    try:
        yield
    finally:
        os.environ.pop(_PYDANTIC_PLUGINS, None)
