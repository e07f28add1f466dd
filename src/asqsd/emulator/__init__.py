"""An SQS-compatible emulator (JSON protocol) for tests and benchmarks of asqsd.

It keeps every operation O(1) in the queue depth, can inject faults, counts everything exactly and
preloads messages in bulk.  See docs/emulator.md.
"""

from __future__ import annotations

from asqsd.emulator.faults import Faults, OperationFaults
from asqsd.emulator.server import Emulator
from asqsd.emulator.store import SENDER_ID, Store

__all__ = ["SENDER_ID", "Emulator", "Faults", "OperationFaults", "Store"]
