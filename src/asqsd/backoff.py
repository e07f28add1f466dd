"""Exponential backoff with full jitter (AWS architecture blog), so receivers never spin."""

from __future__ import annotations

import random


class Backoff:
    """Delays that grow from ``base_s`` to ``cap_s``; each drawn uniformly from [0, ceiling]."""

    def __init__(self, base_s: float = 0.2, cap_s: float = 20.0, rng: random.Random | None = None) -> None:
        self._base = base_s
        self._cap = cap_s
        self._attempt = 0
        self._rng = rng or random.Random()

    @property
    def attempt(self) -> int:
        """Consecutive failures so far."""
        return self._attempt

    def next_delay(self) -> float:
        """The next pause; at least a tenth of the base so a run of failures can never spin."""
        ceiling = min(self._cap, self._base * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return max(self._base / 10, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        """Back to the first delay after a success."""
        self._attempt = 0
