"""Dead-lettering by asqsd: ``dead_letter_statuses`` and ``max_retries`` (docs/daemon.md).

A failed delivery whose status is listed in ``dead_letter_statuses``, or whose receive count reached
``max_retries``, is sent to the dead-letter queue (its body and message attributes as received, plus
asqsd's own ``asqsd.dead_letter.*`` attributes saying why) and only then deleted from the source
queue, through the settler. A send that fails leaves the message to SQS like any failed delivery.
The dead-letter queue is ``dead_letter_queue_url``, else the source queue's redrive target; with
neither known, start-up is refused rather than running a cap that could not move anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.worker.base import DeliveryResult
from asqsd.config import Settings
from asqsd.errors import StartupError
from asqsd.logs import get_logger, printable_bytes
from asqsd.message import Message, MessageAttribute
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import redrive_policy_from
from asqsd.pipeline.queue_check import QueueCheck
from asqsd.pipeline.settle import Settler

log = get_logger("dead_letter")

ATTRIBUTE_PREFIX = "asqsd.dead_letter."
MAX_MESSAGE_ATTRIBUTES = 10  # SQS accepts at most 10 message attributes per message


def queue_url_from_arn(arn: str, source_queue_url: str) -> str | None:
    """The URL of the queue ``arn`` (``arn:aws:sqs:region:account:name``) names, or None if malformed.

    SQS requires a redrive target in the source queue's account and region, so it is reached on the
    source queue URL's scheme and host, with the ARN's account and name as the path. That is the
    AWS URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``) for AWS queues, and the same
    server for any other SQS endpoint.
    """
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[4] or not parts[5]:
        return None
    source = urlsplit(source_queue_url)
    return f"{source.scheme}://{source.netloc}/{parts[4]}/{parts[5]}"


def redrive_target_arn(redrive_policy: str | None) -> str | None:
    """``deadLetterTargetArn`` of a queue's ``RedrivePolicy`` attribute (JSON); None if absent or bad."""
    target = redrive_policy_from(redrive_policy).get("deadLetterTargetArn")
    return target if isinstance(target, str) and target else None


def dead_letter_queue(settings: Settings, check: QueueCheck) -> str | None:
    """The dead-letter queue URL asqsd sends to; None when dead-lettering is off.

    Raises :class:`~asqsd.errors.StartupError` (naming what to set) when ``dead_letter_statuses`` or
    ``max_retries`` is set and no dead-letter queue is known: nothing is ever deleted for want of one.
    """
    enabled = [key for key in ("dead_letter_statuses", "max_retries") if getattr(settings, key)]
    if not enabled:
        return None
    if settings.dead_letter_queue_url is not None:
        log.info("dead-letter-queue", url=settings.dead_letter_queue_url, source="dead_letter_queue_url")
        return settings.dead_letter_queue_url
    arn = redrive_target_arn(check.attributes.get("RedrivePolicy"))
    url = queue_url_from_arn(arn, check.queue_url) if arn is not None else None
    if url is not None:
        log.info("dead-letter-queue", url=url, source="redrive policy", arn=arn)
        return url
    if check.denied:
        why = "its redrive policy cannot be read (sqs:GetQueueAttributes is denied)"
    elif arn is not None:
        why = f"its redrive target {arn!r} is not an SQS queue ARN"
    else:
        why = "the queue has no redrive policy"
    raise StartupError(
        f"{' and '.join(enabled)} need a dead-letter queue, and {why}: set dead_letter_queue_url "
        "(or give the queue a redrive policy)"
    )


def dead_letter_attributes(
    message: Message,
    *,
    reason: str,
    status: int | None,
    source_queue_url: str,
    now_s: float,
    response: str | None = None,
) -> tuple[dict[str, MessageAttribute], list[str]]:
    """The attributes of the dead-letter copy, and the names of asqsd's own that found no room.

    The message's own attributes are kept as received (they are its data); asqsd's fill the slots
    SQS has left, most telling first (reason, status, source queue, receive count, time, response).
    Attributes named ``asqsd.dead_letter.*`` from an earlier dead-lettering are replaced.
    """
    stamp = datetime.fromtimestamp(now_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    own: list[tuple[str, MessageAttribute]] = [("reason", MessageAttribute("String", reason))]
    if status is not None:
        own.append(("status", MessageAttribute("Number", str(status))))
    own += [
        ("source_queue", MessageAttribute("String", source_queue_url)),
        ("receive_count", MessageAttribute("Number", str(message.receive_count))),
        ("time", MessageAttribute("String", stamp)),
    ]
    if response:
        own.append(("response", MessageAttribute("String", response)))
    attributes = {
        name: value
        for name, value in message.message_attributes.items()
        if not name.startswith(ATTRIBUTE_PREFIX)
    }
    room = max(MAX_MESSAGE_ATTRIBUTES - len(attributes), 0)
    attributes.update((ATTRIBUTE_PREFIX + name, value) for name, value in own[:room])
    return attributes, [ATTRIBUTE_PREFIX + name for name, _ in own[room:]]


class DeadLetterer:
    """Decides which failures are dead-lettered, sends them to the dead-letter queue, then deletes."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        settings: Settings,
        settler: Settler,
        counters: Counters,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue_url = queue_url
        self._sqs = sqs
        self._statuses = settings.dead_letter_statuses or frozenset()
        self._max_retries = settings.max_retries
        self._settler = settler
        self._counters = counters
        self._wall_clock = wall_clock

    def reason(self, message: Message, result: DeliveryResult) -> str | None:
        """Why this failed delivery is dead-lettered (``status`` / ``max_retries``), None if it is not."""
        if result.status is not None and result.status in self._statuses:
            return "status"
        if self._max_retries is not None and message.receive_count >= self._max_retries:
            return "max_retries"
        return None

    async def move(self, message: Message, body: str, reason: str, result: DeliveryResult) -> bool:
        """Send ``message`` (with its received ``body``) to the dead-letter queue, then hand the
        delete to the settler; False (nothing deleted, the failure logged) if the send failed."""
        attributes, omitted = dead_letter_attributes(
            message,
            reason=reason,
            status=result.status,
            source_queue_url=self._sqs.queue_url,
            now_s=self._wall_clock(),
            response=printable_bytes(result.response_start) if result.response_start else None,
        )
        # FIFO: the group keeps its order on the dead-letter queue; the message id stands in for a
        # deduplication id SQS did not return, so a repeated move of one message is deduplicated.
        dedup_id = message.attributes.get("MessageDeduplicationId") or message.message_id
        try:
            dead_letter_id = await self._sqs.send_message(
                body,
                attributes,
                group_id=message.group_id,
                deduplication_id=dedup_id if message.group_id is not None else None,
                queue_url=self.queue_url,
            )
        except Exception as exc:  # noqa: BLE001 - a failed move must leave the message, not stop the daemon
            self._counters.dead_letter_failed += 1
            log.error(
                "dead-letter-failed",
                message_id=message.message_id,
                reason=reason,
                queue=self.queue_url,
                error=str(exc),
                detail="the message is left in its queue and reappears when its visibility ends",
            )
            return False
        self._counters.dead_lettered[reason] = self._counters.dead_lettered.get(reason, 0) + 1
        log.warning(
            "dead-lettered",
            message_id=message.message_id,
            dead_letter_message_id=dead_letter_id,
            reason=reason,
            status=result.status,
            receive_count=message.receive_count,
            queue=self.queue_url,
            **({"attributes_omitted": omitted} if omitted else {}),
        )
        self._settler.delete(message)
        return True
