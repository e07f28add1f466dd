"""Leader election for periodic tasks, on the DynamoDB registry table (contract §4.4).

Only one instance of an environment may enqueue periodic tasks. The instances elect that one
through a lease on the ``registry_table`` (stock: the ``AWSEBWorkerCronLeaderRegistry`` table),
using the stock record layout:

* item ``id = "leader-election-record"`` with ``leader_id`` (the holder's identity, a string) and
  ``leader_timestamp`` (a number: the lease **expiry** in epoch seconds, ``-1`` once released);
* non-leaders read it (strongly consistent) about every second, with jitter; once the expiry has
  passed they try a conditional UpdateItem ``leader_timestamp = :old`` (the value just read), so
  of several contenders exactly one wins;
* the leader renews every ``lease_s / 2`` with the condition ``leader_id = :me``, each renewal
  bounded by ``renew_timeout_s``; any failure, timeout or refused condition ends its leadership at
  once, and it stops believing it leads when less than ``expiry_margin_s`` of the lease remains;
* on shutdown (and after any failure) it writes ``leader_timestamp = -1`` where ``leader_id = :me``
  so another instance takes over within a check interval instead of a whole lease.

Stock's registration record and worker counting (which only stretch the check interval with the
number of instances) are not implemented; a replacement must not share a table with stock daemons.

Nothing here does I/O before :meth:`LeaderElection.run` (or :meth:`LeaderElection.step`) is called:
without a ``cron.yaml`` the daemon creates no election and makes no DynamoDB call at all.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from asqsd.backoff import Backoff
from asqsd.errors import AsqsdError, StartupError
from asqsd.logs import get_logger

__all__ = [
    "LEADER_RECORD_ID",
    "RELEASED_TIMESTAMP",
    "Clock",
    "LeaderElection",
    "Leadership",
    "RegistryError",
    "RegistryTable",
    "RegistryUnavailableError",
    "SystemClock",
    "default_identity",
    "wait_first",
]

LEADER_RECORD_ID = "leader-election-record"
RELEASED_TIMESTAMP = -1
# What a freshly created leader record names as its holder (stock writes 0): nobody.
_NOBODY = "0"

# DynamoDB error codes worth retrying after a pause; anything 5xx, 429 or transport-level too.
_RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_CONDITION_FAILED = "ConditionalCheckFailedException"
_TABLE_READY_TIMEOUT_S = 60.0

log = get_logger("leader")


class Clock(Protocol):
    """Wall-clock time and sleeping on it; injectable so tests can run minutes in seconds.

    The lease and the schedule are wall-clock facts shared between hosts (epoch seconds in
    DynamoDB), so this is ``time.time()``, not the monotonic clock.
    """

    def time(self) -> float:
        """Now, in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock have passed."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


async def wait_first(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` finishes (e.g. a sleep, or an event being set).

    The others are cancelled and awaited, so nothing is left running; callers then look at the
    state they care about rather than at which awaitable won.
    """
    waiters = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    for waiter in done:
        waiter.result()  # a failure of the one that finished is the caller's to see


def default_identity() -> str:
    """``<hostname>.<pid>.<random>``: unique per process, readable in the table and the logs."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


# --- the registry table ----------------------------------------------------------------------


class RegistryError(AsqsdError):
    """A registry-table call failed. ``retryable`` tells whether trying again later may help."""

    def __init__(self, operation: str, table: str, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"DynamoDB {operation} on table {table!r} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.retryable = retryable


class RegistryUnavailableError(RegistryError, StartupError):
    """The registry table cannot be used at all (missing, access denied, bad credentials...).

    Retrying will not help, so the election and the scheduler raise it instead of spinning.
    """


def _is_retryable(code: str, http_status: int) -> bool:
    return http_status >= 500 or http_status == 429 or code in _RETRYABLE_CODES


def _encode(value: object) -> dict[str, str]:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        raise TypeError("booleans are not stored in the registry")
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": f"{value:.6f}"}  # microseconds are plenty for a lease
    raise TypeError(f"cannot store {type(value).__name__} in the registry")


def _decode(attribute: Mapping[str, Any]) -> object:
    if "S" in attribute:
        return str(attribute["S"])
    if "N" in attribute:
        # Decimal keeps the stored digits exactly: a value read and written back in a condition
        # must compare equal even when another writer used more digits than a float holds.
        return Decimal(str(attribute["N"]))
    return dict(attribute)


class RegistryTable:
    """The DynamoDB registry table, on an aiobotocore DynamoDB client created elsewhere.

    Items are plain dicts: strings stay strings, numbers come back as :class:`~decimal.Decimal`.
    Errors become :class:`RegistryError` (retryable) or :class:`RegistryUnavailableError`.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        if not table_name:
            raise ValueError("the registry table needs a name (registry_table)")
        self._client = client
        self.name = table_name

    async def get(self, item_id: str) -> dict[str, object] | None:
        """Strongly consistent GetItem; None when the item does not exist."""
        response = await self._call("get_item", Key={"id": {"S": item_id}}, ConsistentRead=True)
        item = (response or {}).get("Item")
        return None if item is None else {str(k): _decode(v) for k, v in item.items()}

    async def put_if_absent(self, item_id: str, values: Mapping[str, object]) -> bool:
        """PutItem only if no item has this id; False if one already existed."""
        item = {"id": {"S": item_id}, **{k: _encode(v) for k, v in values.items()}}
        response = await self._call("put_item", Item=item, ConditionExpression="attribute_not_exists(id)")
        return response is not None

    async def update(
        self,
        item_id: str,
        expression: str,
        values: Mapping[str, object],
        *,
        condition: str | None = None,
        return_old: bool = False,
    ) -> dict[str, object] | None:
        """UpdateItem; None if ``condition`` did not hold, else the old attributes (when
        ``return_old``) or an empty dict."""
        kwargs: dict[str, Any] = {
            "Key": {"id": {"S": item_id}},
            "UpdateExpression": expression,
            "ReturnValues": "UPDATED_OLD" if return_old else "NONE",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = {k: _encode(v) for k, v in values.items()}
        if condition is not None:
            kwargs["ConditionExpression"] = condition
        response = await self._call("update_item", **kwargs)
        if response is None:
            return None
        return {str(k): _decode(v) for k, v in (response.get("Attributes") or {}).items()}

    async def create_if_missing(self) -> bool:
        """Create the table (key ``id`` string, on-demand) unless it exists; True if created.

        Only for tests and ``asqsd local``: on Elastic Beanstalk the table belongs to the
        environment's CloudFormation stack, and the instance role may not create tables.
        """
        try:
            await self._call(
                "create_table",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except RegistryError as exc:
            if exc.code == "ResourceInUseException":
                return False
            raise
        await self._wait_active()
        log.info("registry-table-created", table=self.name)
        return True

    async def _wait_active(self) -> None:
        deadline = time.monotonic() + _TABLE_READY_TIMEOUT_S
        while True:
            response = await self._call("describe_table")
            if (response or {}).get("Table", {}).get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise RegistryUnavailableError(
                    "DescribeTable", self.name, "NotActive", "table did not become ACTIVE", retryable=False
                )
            await asyncio.sleep(0.5)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """``client.<method>(TableName=..., **kwargs)``; None when its condition did not hold.

        Everything else that goes wrong becomes a :class:`RegistryError`.
        """
        operation = "".join(part.capitalize() for part in method.split("_"))
        try:
            response: dict[str, Any] = await getattr(self._client, method)(TableName=self.name, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown")).rsplit("#", 1)[-1]
            if code == _CONDITION_FAILED:
                return None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = str(error.get("Message", ""))
            if _is_retryable(code, status):
                raise RegistryError(operation, self.name, code, message, retryable=True) from exc
            raise RegistryUnavailableError(
                operation, self.name, code, f"{message} {_hint(code)}".strip(), retryable=False
            ) from exc
        except (BotoCoreError, OSError) as exc:
            # Endpoint down, connection reset, read timeout, credentials not there yet (an
            # instance profile can be briefly unavailable at boot): all worth another try.
            raise RegistryError(operation, self.name, type(exc).__name__, str(exc), retryable=True) from exc
        return response


def _hint(code: str) -> str:
    if code == "ResourceNotFoundException":
        return "(check registry_table: it must name an existing table in this region)"
    if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"):
        return "(the instance role needs dynamodb:GetItem, PutItem and UpdateItem on the registry table)"
    return ""


# --- the election ----------------------------------------------------------------------------


class Leadership(Protocol):
    """What the scheduler needs from an election (a stub can stand in for it in tests)."""

    @property
    def identity(self) -> str:
        """This instance's name in the registry."""
        ...

    @property
    def is_leader(self) -> bool:
        """Whether this instance holds an unexpired lease right now."""
        ...

    @property
    def term(self) -> int:
        """How many times leadership was gained; changes when it is lost and regained."""
        ...

    async def wait_for_leadership(self) -> None:
        """Return once this instance leads."""
        ...

    async def wait_for_loss(self) -> None:
        """Return once this instance does not lead."""
        ...

    async def step_down(self, cooldown_s: float) -> None:
        """Give the lease up and stay out of the election for ``cooldown_s``."""
        ...


class LeaderElection:
    """One contender for the periodic-task lease on the registry table.

    Run :meth:`run` as a task; read :attr:`is_leader`, or wait with :meth:`wait_for_leadership` /
    :meth:`wait_for_loss`. :meth:`stop` ends ``run()``, which then releases the lease.
    Cancelling ``run()`` instead drops leadership locally *without* writing to the table (as a
    crash would): another instance then takes over when the lease expires.

    ``lease_s``, ``check_interval_s`` and ``cooldown_s`` are measured on ``clock``;
    ``renew_timeout_s`` on the event loop.
    """

    def __init__(
        self,
        registry: RegistryTable,
        *,
        identity: str | None = None,
        lease_s: float = 10.0,
        renew_interval_s: float | None = None,
        renew_timeout_s: float = 2.0,
        expiry_margin_s: float | None = None,
        check_interval_s: float = 1.0,
        max_backoff_s: float = 30.0,
        create_table_if_missing: bool = False,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._renew_interval_s = lease_s / 2 if renew_interval_s is None else renew_interval_s
        # Stock: 1 s of a 10 s lease; shorter (test) leases keep the same proportion.
        self._margin_s = min(1.0, lease_s / 10) if expiry_margin_s is None else expiry_margin_s
        if not 0 < self._margin_s < lease_s or not 0 < self._renew_interval_s < lease_s - self._margin_s:
            raise ValueError("need 0 < expiry_margin_s < lease_s and 0 < renew_interval_s < lease_s - margin")
        self._registry = registry
        self._identity = identity or default_identity()
        self._lease_s = lease_s
        self._renew_timeout_s = renew_timeout_s
        self._check_interval_s = check_interval_s
        self._create_table = create_table_if_missing
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._backoff = Backoff(base_s=check_interval_s, cap_s=max_backoff_s, rng=self._rng)
        self._table_ready = False
        self._expiry: float | None = None  # set while leading
        self._term = 0
        self._cooldown_until = 0.0
        # Renewal and release both write the record; one at a time, or a late renewal could
        # re-take a lease that was just released.
        self._write_lock = asyncio.Lock()
        self._leading = asyncio.Event()
        self._not_leading = asyncio.Event()
        self._not_leading.set()
        self._stopping = asyncio.Event()

    # --- state -------------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """This instance's ``leader_id``."""
        return self._identity

    @property
    def is_leader(self) -> bool:
        """True while this instance holds the lease with more than ``expiry_margin_s`` left."""
        return self._expiry is not None and self._clock.time() < self._expiry - self._margin_s

    @property
    def lease_expiry(self) -> float | None:
        """The expiry (epoch seconds) of the lease held, or None."""
        return self._expiry

    @property
    def term(self) -> int:
        """How many times this instance has gained leadership."""
        return self._term

    async def wait_for_leadership(self) -> None:
        """Return once this instance leads (at once if it does)."""
        await self._leading.wait()

    async def wait_for_loss(self) -> None:
        """Return once this instance does not lead (at once if it does not).

        Follows the rounds: a lease that runs out between rounds is reported by the next one
        (within ``expiry_margin_s``), while :attr:`is_leader` turns false at once.
        """
        await self._not_leading.wait()

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Contend, lead and renew until :meth:`stop`; then release the lease.

        Raises :class:`RegistryUnavailableError` if the table cannot be used (missing, access
        denied); throttling and transport errors are retried with jittered backoff.
        """
        # Instances of an environment usually start together (deploys, scaling): spread their
        # first contest so they do not all hit the record in the same instant.
        delay = self._rng.uniform(0, self._check_interval_s)
        try:
            while not self._stopping.is_set():
                await wait_first(self._clock.sleep(delay), self._stopping.wait())
                if self._stopping.is_set():
                    break
                delay = await self.step()
        except asyncio.CancelledError:
            self._drop("cancelled")
            raise
        except Exception:
            await self.release()
            raise
        await self.release()

    def stop(self) -> None:
        """Ask :meth:`run` to finish; it releases the lease on its way out."""
        self._stopping.set()

    async def step(self) -> float:
        """One round (renew if leading, else try to acquire); clock seconds until the next."""
        if self._expiry is not None:
            return await self._renew_round()
        return await self._acquire_round()

    async def release(self) -> None:
        """Give the lease up now (``leader_timestamp = -1`` where ``leader_id = :me``).

        Best effort and bounded by ``renew_timeout_s``; failures are logged, not raised (the
        lease then simply expires).
        """
        async with self._write_lock:
            if self._expiry is None:
                return
            self._drop("released")
            await self._write_release()

    async def step_down(self, cooldown_s: float) -> None:
        """Release the lease and stay out of the election for ``cooldown_s`` (stock: 15 s)."""
        self._cooldown_until = self._clock.time() + cooldown_s
        log.warning("leadership-stepping-down", identity=self._identity, cooldown_s=cooldown_s)
        await self.release()

    # --- rounds ------------------------------------------------------------------------------
    async def _acquire_round(self) -> float:
        now = self._clock.time()
        if now < self._cooldown_until:
            return self._cooldown_until - now
        try:
            won = await self._try_acquire(now)
        except RegistryError as exc:
            if not exc.retryable:
                raise
            delay = self._backoff.next_delay()
            log.warning("registry-retry", identity=self._identity, code=exc.code, retry_in_s=round(delay, 2))
            return delay
        self._backoff.reset()
        return self._renew_delay() if won else self._check_delay()

    async def _try_acquire(self, now: float) -> bool:
        if not self._table_ready:
            if self._create_table:
                await self._registry.create_if_missing()
            self._table_ready = True
        record = await self._registry.get(LEADER_RECORD_ID)
        if record is None:
            # First contender ever: create the record released, then compete for it like any
            # other released record (another creator racing us is harmless).
            await self._registry.put_if_absent(
                LEADER_RECORD_ID, {"leader_id": _NOBODY, "leader_timestamp": RELEASED_TIMESTAMP}
            )
            old: object = Decimal(RELEASED_TIMESTAMP)
            holder: object = _NOBODY
        else:
            old, holder = record.get("leader_timestamp"), record.get("leader_id")
        if not isinstance(old, Decimal):
            return await self._overwrite_damaged(now)
        if not (now > old or holder == self._identity):
            return False
        expiry = now + self._lease_s
        taken = await self._registry.update(
            LEADER_RECORD_ID,
            "SET leader_id = :me, leader_timestamp = :expiry",
            {":me": self._identity, ":expiry": expiry, ":old": old},
            condition="leader_timestamp = :old",
        )
        if taken is not None:
            self._gain(expiry)
        return taken is not None

    async def _overwrite_damaged(self, now: float) -> bool:
        # Someone wrote a record without a numeric leader_timestamp; take it only if it is still
        # in that state, so a concurrent repair by another contender wins or loses cleanly.
        expiry = now + self._lease_s
        taken = await self._registry.update(
            LEADER_RECORD_ID,
            "SET leader_id = :me, leader_timestamp = :expiry",
            {":me": self._identity, ":expiry": expiry, ":n": "N"},
            condition="NOT attribute_type(leader_timestamp, :n)",
        )
        if taken is not None:
            self._gain(expiry)
        return taken is not None

    async def _renew_round(self) -> float:
        async with self._write_lock:
            if self._expiry is None:  # released while we waited for the lock
                return self._check_delay()
            now = self._clock.time()
            if now >= self._expiry - self._margin_s:
                # The loop fell behind (a blocked event loop, a suspended VM): the lease may be
                # someone else's already, so stop leading before anything else happens.
                self._drop("lease expired before it was renewed")
                await self._write_release()
                return self._check_delay()
            return await self._renew(now)

    async def _renew(self, now: float) -> float:
        expiry = now + self._lease_s
        try:
            async with asyncio.timeout(self._renew_timeout_s):
                renewed = await self._registry.update(
                    LEADER_RECORD_ID,
                    "SET leader_timestamp = :expiry",
                    {":expiry": expiry, ":me": self._identity},
                    condition="leader_id = :me",
                )
        except (RegistryError, TimeoutError) as exc:
            self._drop(f"renewal failed: {exc or 'timed out'}")
            if isinstance(exc, RegistryError) and not exc.retryable:
                raise
            # The update may still have landed: hand the lease back so nobody waits it out.
            await self._write_release()
            return self._check_delay()
        if renewed is None:
            self._drop("renewal refused: another instance holds the lease")
            return self._check_delay()
        self._expiry = expiry
        return self._renew_delay()

    async def _write_release(self) -> None:
        try:
            async with asyncio.timeout(self._renew_timeout_s):
                await self._registry.update(
                    LEADER_RECORD_ID,
                    "SET leader_timestamp = :released",
                    {":released": RELEASED_TIMESTAMP, ":me": self._identity},
                    condition="leader_id = :me",
                )
        except (RegistryError, TimeoutError) as exc:
            log.warning("leadership-release-failed", identity=self._identity, error=str(exc) or "timed out")

    # --- bookkeeping -------------------------------------------------------------------------
    def _gain(self, expiry: float) -> None:
        self._expiry = expiry
        self._term += 1
        self._not_leading.clear()
        self._leading.set()
        log.info(
            "leadership-gained",
            identity=self._identity,
            term=self._term,
            lease_expires_at=datetime.fromtimestamp(expiry, UTC).isoformat(),
        )

    def _drop(self, reason: str) -> None:
        if self._expiry is None:
            return
        self._expiry = None
        self._leading.clear()
        self._not_leading.set()
        level = log.info if reason == "released" else log.warning
        level("leadership-lost", identity=self._identity, term=self._term, reason=reason)

    def _renew_delay(self) -> float:
        assert self._expiry is not None
        # Wake early enough to demote ourselves before the margin if the renewal keeps failing.
        until_margin = self._expiry - self._margin_s - self._clock.time()
        return max(0.0, min(self._renew_interval_s, until_margin))

    def _check_delay(self) -> float:
        return self._check_interval_s * self._rng.uniform(0.75, 1.25)
