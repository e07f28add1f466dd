"""Where the messages live: the in-repo SQS emulator (a subprocess), or an external SQS endpoint.

Both give the harness the same operations: load messages whose body carries their enqueue time, read the
queue depth, and (emulator only) read and reset exact per-operation call counters.  Message bodies are
JSON ``{"sent_at": <epoch seconds>, "chunk": k, "seq": i}``; the worker turns ``sent_at`` into the
end-to-end latency.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from benchmarks.harness import ManagedProcess

READY_PATTERN = r"asqsd-emulator listening on (http://\S+)"
ACCOUNT_ID = "000000000000"


def timestamped_body(sent_at: float, chunk: int, seq: int | str) -> str:
    """The body every benchmark message carries (``seq`` may be the emulator's ``{i}`` placeholder)."""
    return f'{{"sent_at": {sent_at:.6f}, "chunk": {chunk}, "seq": {seq}}}'


class QueueBackend(Protocol):
    """The operations a scenario needs from the queue under the daemon."""

    endpoint: str
    queue_url: str
    has_counters: bool

    @property
    def pid(self) -> int | None:
        """PID of the SQS server process, when this backend started one."""

    async def send(self, count: int) -> int:
        """Enqueue ``count`` messages stamped with the current time; returns how many were added."""

    async def depth(self) -> int | None:
        """Visible (receivable) messages now, if known."""

    async def counters(self) -> dict[str, Any] | None:
        """Exact counters (emulator admin format) or None when the backend has none."""

    async def reset_counters(self) -> None:
        """Zero the cumulative counters (no-op without counters)."""

    async def close(self) -> None:
        """Stop whatever this backend started."""


class EmulatorBackend:
    """A fresh ``python -m asqsd.emulator`` subprocess with one standard queue, driven via ``/_asqsd/``."""

    has_counters = True

    def __init__(self, process: ManagedProcess, endpoint: str, queue: str, session: aiohttp.ClientSession):
        self.process = process
        self.endpoint = endpoint
        self.queue = queue
        self.queue_url = f"{endpoint}/{ACCOUNT_ID}/{queue}"
        self._session = session
        self._chunk = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @classmethod
    async def start(
        cls, log_dir: Path, env: dict[str, str], queue: str = "bench", nice: int = 0
    ) -> EmulatorBackend:
        argv = [sys.executable, "-m", "asqsd.emulator", "--host", "127.0.0.1", "--port", "0"]
        process = ManagedProcess("emulator", [*argv, "--queue", queue], log_dir, env=env, nice=nice)
        try:
            match = await process.wait_for_output(READY_PATTERN, limit_s=30)
        except BaseException:
            await process.stop(5)
            raise
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return cls(process, match.group(1), queue, session)

    async def _admin(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        url = f"{self.endpoint}/_asqsd{path}"
        async with self._session.request(method, url, json=payload) as response:
            data = await response.json()
            if response.status != 200:
                raise RuntimeError(f"emulator admin {method} {path}: HTTP {response.status} {data}")
            return data

    async def send(self, count: int) -> int:
        if count <= 0:
            return 0
        self._chunk += 1
        body = timestamped_body(time.time(), self._chunk, "{i}")
        result = await self._admin("POST", f"/queues/{self.queue}/preload", {"count": count, "body": body})
        return int(result["added"])

    async def depth(self) -> int | None:
        data = await self._admin("GET", f"/counters?queue={self.queue}")
        return int(data["visible"])

    async def counters(self) -> dict[str, Any] | None:
        data: dict[str, Any] = await self._admin("GET", "/counters")
        return data

    async def reset_counters(self) -> None:
        await self._admin("POST", "/counters/reset")

    async def close(self) -> None:
        await self._session.close()
        await self.process.stop(10)


class ExternalBackend:
    """An SQS endpoint someone else runs (``--endpoint`` / ``--queue-url``), loaded through the SDK.

    There are no exact counters here: the report shows "n/a" for SQS calls.
    """

    has_counters = False

    def __init__(self, endpoint: str, queue_url: str, region: str) -> None:
        self.endpoint = endpoint
        self.queue_url = queue_url
        self.region = region
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._chunk = 0

    @property
    def pid(self) -> int | None:
        return None

    async def open(self) -> ExternalBackend:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(max_pool_connections=32, retries={"max_attempts": 3, "mode": "standard"})
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "sqs", region_name=self.region, endpoint_url=self.endpoint or None, config=config
            )
        )
        return self

    async def send(self, count: int) -> int:
        if count <= 0:
            return 0
        self._chunk += 1
        chunk, now = self._chunk, time.time()
        batches = [
            [
                {"Id": str(j), "MessageBody": timestamped_body(now, chunk, start + j)}
                for j in range(min(10, count - start))
            ]
            for start in range(0, count, 10)
        ]
        sent = 0
        gate = asyncio.Semaphore(16)

        async def one(entries: list[dict[str, str]]) -> None:
            nonlocal sent
            async with gate:
                response = await self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            sent += len(response.get("Successful", []))

        await asyncio.gather(*(one(batch) for batch in batches))
        return sent

    async def depth(self) -> int | None:
        response = await self._client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(response["Attributes"]["ApproximateNumberOfMessages"])

    async def counters(self) -> dict[str, Any] | None:
        return None

    async def reset_counters(self) -> None:
        return None

    async def close(self) -> None:
        await self._stack.aclose()


def unique_queue_name(prefix: str = "asqsd-bench") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
