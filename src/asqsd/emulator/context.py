"""What an operation handler needs besides its parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from asqsd.emulator.store import Store


@dataclass(slots=True)
class Context:
    """Per-request context: the store, the base URL the client used, and batch fault injection."""

    store: Store
    base_url: str
    # Returns True for each batch entry that should fail with an injected InternalError.
    fail_entry: Callable[[], bool] | None = None
    entries_failed: int = 0

    def queue_url(self, name: str) -> str:
        return f"{self.base_url}/{self.store.account_id}/{name}"
