"""An SQS-compatible emulator (JSON protocol) for tests and benchmarks of asqsd.

It keeps every operation O(1) in the queue depth, can inject faults, counts everything exactly and
preloads messages in bulk.  See docs/emulator.md.

The names below are imported on first use, so that ``asqsd.emulator.args`` (the flags ``asqsd``'s
parser shows) can be imported without the server, aiohttp.web and the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asqsd.emulator.faults import Faults, OperationFaults
    from asqsd.emulator.server import Emulator
    from asqsd.emulator.store import SENDER_ID, Store

__all__ = ["SENDER_ID", "Emulator", "Faults", "OperationFaults", "Store"]

_HOMES = {
    "SENDER_ID": "asqsd.emulator.store",
    "Emulator": "asqsd.emulator.server",
    "Faults": "asqsd.emulator.faults",
    "OperationFaults": "asqsd.emulator.faults",
    "Store": "asqsd.emulator.store",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'asqsd.emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
