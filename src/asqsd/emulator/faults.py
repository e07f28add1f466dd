"""Fault injection for SQS operations: errors, latency, dropped connections, partial batch failures.

Rules are per operation name, with ``"*"`` as the fallback for operations without their own rule.  All
random draws come from one ``random.Random``; with a seed, the same sequence of calls meets the same faults.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from asqsd.emulator import errors

ANY_OPERATION = "*"
ERROR_KINDS: dict[str, Callable[[], errors.SqsError]] = {
    "internal": errors.internal_error,  # HTTP 500 InternalError
    "unavailable": errors.service_unavailable,  # HTTP 503 ServiceUnavailable
    "throttling": errors.throttling,  # HTTP 400 ThrottlingException
    "request_throttled": errors.request_throttled,  # HTTP 403 RequestThrottled (SQS's modelled error)
    "expired_token": errors.expired_token,  # HTTP 403 ExpiredToken (temporary credentials expired)
}
UNAVAILABLE_MODES = ("error", "drop")


@dataclass(slots=True)
class OperationFaults:
    """Faults for one operation.  Rates are probabilities in [0, 1]; latency is in seconds."""

    error_rate: float = 0.0
    error: str = "internal"
    latency: float = 0.0
    latency_jitter: float = 0.0
    batch_failure_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_rate: float = 0.0

    def check(self) -> None:
        for name in ("error_rate", "batch_failure_rate", "drop_rate", "drop_after_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.latency < 0 or self.latency_jitter < 0:
            raise ValueError("latency and latency_jitter must be >= 0")
        if self.error not in ERROR_KINDS:
            raise ValueError(f"error must be one of {sorted(ERROR_KINDS)}, got {self.error!r}")


FIELD_NAMES = frozenset(field.name for field in fields(OperationFaults))


@dataclass(slots=True)
class Decision:
    """What to do to one call."""

    latency: float = 0.0
    error: errors.SqsError | None = None
    drop: bool = False
    drop_after: bool = False
    fail_entry: Callable[[], bool] | None = None


class Faults:
    """The fault plan of an emulator; cheap to consult when nothing is configured (``active`` False)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._seed = seed
        self._rules: dict[str, OperationFaults] = {}
        self.unavailable: str | None = None
        self.active = False

    def seed(self, seed: int | None) -> None:
        """Restart the random sequence (same seed, same faults for the same calls)."""
        self._seed = seed
        self._rng = random.Random(seed)

    def set(self, operation: str = ANY_OPERATION, **settings: Any) -> OperationFaults:
        """Merge ``settings`` (fields of :class:`OperationFaults`) into the rule for ``operation``."""
        unknown = set(settings) - FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        current = self._rules.get(operation, OperationFaults())
        rule = OperationFaults(**{**asdict(current), **settings})
        rule.check()
        self._rules[operation] = rule
        self._refresh()
        return rule

    def set_unavailable(self, mode: str | None = "error") -> None:
        """``"error"``: every SQS call gets 503; ``"drop"``: connections are closed; None: normal."""
        if mode is not None and mode not in UNAVAILABLE_MODES:
            raise ValueError(f"mode must be one of {UNAVAILABLE_MODES} or None")
        self.unavailable = mode
        self._refresh()

    def clear(self, operation: str | None = None) -> None:
        """Remove one operation's rule, or every rule and the unavailable switch."""
        if operation is None:
            self._rules.clear()
            self.unavailable = None
        else:
            self._rules.pop(operation, None)
        self._refresh()

    def _refresh(self) -> None:
        self.active = bool(self._rules) or self.unavailable is not None

    def rule_for(self, operation: str) -> OperationFaults | None:
        return self._rules.get(operation) or self._rules.get(ANY_OPERATION)

    def decide(self, operation: str) -> Decision | None:
        """The faults to apply to one call of ``operation`` (None: none)."""
        if self.unavailable == "drop":
            return Decision(drop=True)
        if self.unavailable == "error":
            return Decision(error=errors.service_unavailable())
        rule = self.rule_for(operation)
        if rule is None:
            return None
        return self._draw(rule)

    def _draw(self, rule: OperationFaults) -> Decision:
        rng = self._rng
        decision = Decision(latency=rule.latency)
        if rule.latency_jitter:
            decision.latency += rng.uniform(0.0, rule.latency_jitter)
        if rule.drop_rate and rng.random() < rule.drop_rate:
            decision.drop = True
        elif rule.error_rate and rng.random() < rule.error_rate:
            decision.error = ERROR_KINDS[rule.error]()
        elif rule.drop_after_rate and rng.random() < rule.drop_after_rate:
            decision.drop_after = True
        if rule.batch_failure_rate:
            rate = rule.batch_failure_rate
            decision.fail_entry = lambda: rng.random() < rate
        return decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self._seed,
            "unavailable": self.unavailable,
            "operations": {name: asdict(rule) for name, rule in sorted(self._rules.items())},
        }

    def configure(self, spec: dict[str, Any]) -> None:
        """Apply an admin-API document: ``{"seed", "unavailable", "operations": {op: {...}}}``.

        Keys that are absent are left unchanged; operation rules are merged.
        """
        if "seed" in spec:
            self.seed(spec["seed"])
        if "unavailable" in spec:
            self.set_unavailable(spec["unavailable"])
        operations = spec.get("operations", {})
        if not isinstance(operations, dict):
            raise ValueError("operations must be a map of operation name to settings")
        for name, settings in operations.items():
            if not isinstance(settings, dict):
                raise ValueError(f"settings for {name} must be a map")
            self.set(name, **settings)
