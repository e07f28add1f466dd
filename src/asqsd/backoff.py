"""Exponential backoff with jitter (AWS architecture blog), so retry loops never spin.

One formula for every retry pause in asqsd: :func:`backoff_delay` is the pure form (the caller
counts the failures), :class:`Backoff` the stateful one (it counts them itself).
"""

from __future__ import annotations

import random

# 2**30 times any sensible base is past any cap; the bound only keeps the power finite.
_MAX_DOUBLINGS = 30


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rng: random.Random, jitter: float = 1.0
) -> float:
    """The pause after ``attempt`` doublings: ``base_s * 2**attempt`` capped at ``cap_s``, jittered.

    ``jitter`` is the share of that ceiling left to chance: the pause is drawn uniformly from
    [ceiling * (1 - jitter), ceiling]. 1.0 is "full jitter" (0 to the ceiling), 0.5 keeps at least
    half of it, 0.0 is plain doubling (``rng`` is then not used). Never less than a tenth of
    ``base_s``, so a run of failures can never spin.
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, _MAX_DOUBLINGS))
    if jitter:
        ceiling *= rng.uniform(1.0 - jitter, 1.0)
    return max(base_s / 10, ceiling)


class Backoff:
    """Delays that grow from ``base_s`` to ``cap_s``; each drawn uniformly from [0, ceiling] by default.

    ``jitter`` as in :func:`backoff_delay` (0.0: the plain sequence base, 2*base, ... cap).
    """

    def __init__(
        self,
        base_s: float = 0.2,
        cap_s: float = 20.0,
        rng: random.Random | None = None,
        *,
        jitter: float = 1.0,
    ) -> None:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        self._base = base_s
        self._cap = cap_s
        self._jitter = jitter
        self._attempt = 0
        # Made at the first delay: seeding a Random reads the OS's entropy (~11 µs), and most
        # Backoffs (one per DeleteMessageBatch call) never see a failure.
        self._rng = rng

    @property
    def attempt(self) -> int:
        """Consecutive failures so far."""
        return self._attempt

    def next_delay(self) -> float:
        """The next pause; at least a tenth of the base so a run of failures can never spin."""
        if self._rng is None:
            self._rng = random.Random()
        delay = backoff_delay(self._attempt, self._base, self._cap, self._rng, self._jitter)
        self._attempt = min(self._attempt + 1, _MAX_DOUBLINGS)
        return delay

    def reset(self) -> None:
        """Back to the first delay after a success."""
        self._attempt = 0
