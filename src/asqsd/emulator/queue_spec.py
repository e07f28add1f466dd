"""Queues to create at start: from flags or a small YAML/JSON file, with dead-letter queues.

``asqsd emulator``, ``python -m asqsd.emulator`` and ``asqsd local`` describe the queues they
create as :class:`QueueSpec` values and create them with :func:`create_queues`, which makes each
dead-letter queue before the queue whose redrive policy names it (SQS refuses a redrive policy
whose target does not exist). The file form (YAML, or JSON, which YAML reads too)::

    queues:
      jobs:
        attributes: {VisibilityTimeout: 30}
        dead_letter_queue: jobs-dlq
        max_receive_count: 3
      jobs-dlq: {}

A dead-letter queue named but not listed is created with no attributes (FIFO when its name ends
in ``.fifo``). Bad input is a :class:`QueueSpecError` that names the queue and the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asqsd.emulator.args import DEFAULT_MAX_RECEIVE_COUNT
from asqsd.emulator.errors import SqsError
from asqsd.emulator.server import Emulator

__all__ = [
    "QueueSpec",
    "QueueSpecError",
    "create_queues",
    "dead_letter_name",
    "load_queue_file",
    "specs_from_flags",
]

_KEYS = frozenset({"attributes", "dead_letter_queue", "max_receive_count"})


class QueueSpecError(ValueError):
    """A queue description that cannot be used; the message says which queue and key."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue: its name, its attributes, and the dead-letter queue its redrive policy names."""

    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    dead_letter_queue: str | None = None
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT


def dead_letter_name(queue: str) -> str:
    """``<queue>-dlq`` (``<queue>-dlq.fifo`` for a FIFO queue): the name ``asqsd local`` uses."""
    if queue.endswith(".fifo"):
        return queue.removesuffix(".fifo") + "-dlq.fifo"
    return queue + "-dlq"


def specs_from_flags(
    queues: Iterable[str], dead_letter_queue: str | None, max_receive_count: int
) -> list[QueueSpec]:
    """``--queue NAME`` (repeatable), each with a redrive policy to ``--dlq`` when one is given."""
    if max_receive_count < 1 or max_receive_count > 1000:
        raise QueueSpecError(f"--max-receive-count {max_receive_count}: SQS allows 1 to 1000")
    specs = [QueueSpec(name, {}, dead_letter_queue, max_receive_count) for name in queues]
    if dead_letter_queue is not None and not specs:
        raise QueueSpecError(f"--dlq {dead_letter_queue}: name the queues it serves with --queue")
    return specs


def load_queue_file(path: Path) -> list[QueueSpec]:
    """The queues of a YAML or JSON file (form in the module docstring)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise QueueSpecError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise QueueSpecError(f"{path}: not YAML or JSON: {_one_line(str(exc))}") from None
    queues = data.get("queues") if isinstance(data, dict) else None
    if not isinstance(queues, dict) or not queues:
        raise QueueSpecError(f"{path}: expected a 'queues' mapping of queue names to settings")
    return [_spec(path, str(name), value) for name, value in queues.items()]


def _spec(path: Path, name: str, value: Any) -> QueueSpec:
    where = f"{path}: queue {name!r}"
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise QueueSpecError(f"{where}: expected a mapping of {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise QueueSpecError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    attributes = value.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise QueueSpecError(f"{where}: 'attributes' must be a mapping of SQS attribute names to values")
    count = value.get("max_receive_count", DEFAULT_MAX_RECEIVE_COUNT)
    if isinstance(count, bool) or not isinstance(count, int):
        raise QueueSpecError(f"{where}: 'max_receive_count' must be a whole number, not {count!r}")
    dlq = value.get("dead_letter_queue")
    return QueueSpec(
        name,
        {str(k): _attribute_text(v) for k, v in attributes.items()},
        None if dlq is None else str(dlq),
        count,
    )


def _attribute_text(value: Any) -> str:
    # SQS attributes are strings; YAML reads 30 as a number and true as a boolean.
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def create_queues(emulator: Emulator, specs: Iterable[QueueSpec]) -> dict[str, str]:
    """Create every queue (dead-letter queues first); returns name → URL in creation order.

    Raises :class:`QueueSpecError` for a cycle of dead-letter queues and for a queue SQS would
    refuse (its name, the error code and SQS's message).
    """
    wanted = {spec.name: spec for spec in specs}
    urls: dict[str, str] = {}
    for name in wanted:
        _create(emulator, name, wanted, urls, ())
    return urls


def _create(
    emulator: Emulator,
    name: str,
    wanted: Mapping[str, QueueSpec],
    urls: dict[str, str],
    chain: tuple[str, ...],
) -> None:
    if name in urls:
        return
    if name in chain:
        cycle = " -> ".join((*chain, name))
        raise QueueSpecError(f"queue {name!r}: dead-letter queues form a cycle: {cycle}")
    spec = wanted.get(name, QueueSpec(name))
    attributes = dict(spec.attributes)
    if name.endswith(".fifo"):
        attributes.setdefault("FifoQueue", "true")
    if spec.dead_letter_queue is not None:
        _create(emulator, spec.dead_letter_queue, wanted, urls, (*chain, name))
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": emulator.store.arn(spec.dead_letter_queue),
                "maxReceiveCount": str(spec.max_receive_count),
            }
        )
    try:
        urls[name] = emulator.create_queue(name, attributes)
    except SqsError as exc:
        raise QueueSpecError(f"queue {name!r}: {exc.code}: {exc.message}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())
