"""Leader election for periodic tasks, on the DynamoDB registry table, as stock elects one.

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
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from asqsd.backoff import Backoff
from asqsd.clients.dynamodb import DynamoDBError
from asqsd.logs import get_logger
from asqsd.periodic.clock import Clock, SystemClock, wait_first
from asqsd.periodic.registry import RegistryTable

LEADER_RECORD_ID = "leader-election-record"


RELEASED_TIMESTAMP = -1


# What a freshly created leader record names as its holder (stock writes 0): nobody.
_NOBODY = "0"


log = get_logger("leader")


def default_identity() -> str:
    """``<hostname>.<pid>.<random>``: unique per process, readable in the table and the logs."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


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
        self._since: float | None = None  # clock time leadership was gained, while leading
        self._seen_leader: str | None = None  # the holder of an unexpired lease, as last read
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
    def term(self) -> int:
        """How many times this instance has gained leadership."""
        return self._term

    @property
    def leading_since(self) -> float | None:
        """When this instance gained the lease it holds (clock time), None unless :attr:`is_leader`."""
        return self._since if self.is_leader else None

    @property
    def seen_leader(self) -> str | None:
        """Who leads as this instance last saw it: itself while leading, else the holder of an
        unexpired lease in the record it last read; None when nobody held one."""
        return self._identity if self.is_leader else self._seen_leader

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

        Raises :class:`TableUnavailableError` if the table cannot be used (missing, access
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
        except DynamoDBError as exc:
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
        self._seen_leader = str(holder) if isinstance(old, Decimal) and now <= old else None
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
        except (DynamoDBError, TimeoutError) as exc:
            self._drop(f"renewal failed: {exc or 'timed out'}")
            if isinstance(exc, DynamoDBError) and not exc.retryable:
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
        except (DynamoDBError, TimeoutError) as exc:
            log.warning("leadership-release-failed", identity=self._identity, error=str(exc) or "timed out")

    # --- bookkeeping -------------------------------------------------------------------------
    def _gain(self, expiry: float) -> None:
        self._expiry = expiry
        self._since = self._clock.time()
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
        self._since = self._seen_leader = None
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
