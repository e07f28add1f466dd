"""The async_ack registry: acknowledgement bodies, tokens, answers, deadlines and the job bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from asqsd.clients.worker.base import DeliveryResult, Request
from asqsd.message import Message
from asqsd.observe.counters import Counters
from asqsd.pipeline.async_jobs import (
    ACK_HEADER,
    Ack,
    AckError,
    AsyncJobs,
    AsyncPolicy,
    Job,
    parse_ack,
)
from asqsd.pipeline.channel import Channel
from asqsd.pipeline.dispatcher import DeliveryPolicy, Dispatcher, DispatchShared
from asqsd.pipeline.leases import LeaseTable
from asqsd.pipeline.request import StaticHeaders
from asqsd.pipeline.settle import Settler
from asqsd.tasks import TaskSet
from tests.unit.pipeline.test_settle import RecordingSQS

BASE = "http://127.0.0.1:9325"
ACCEPTED = DeliveryResult(202, None, 0.01)


class TestParseAck:
    """The JSON body a worker POSTs to its acknowledgement URL."""

    @pytest.mark.parametrize(
        ("body", "ack"),
        [
            (b'{"outcome": "done"}', Ack("done")),
            (b'{"outcome": "extend"}', Ack("extend")),
            (b'{"outcome": "fail"}', Ack("fail")),
            (b'{"outcome": "fail", "delay_s": 0}', Ack("fail", 0)),
            (b'{"outcome": "fail", "delay_s": 43200}', Ack("fail", 43200)),
        ],
    )
    def test_valid(self, body: bytes, ack: Ack) -> None:
        assert parse_ack(body) == ack

    @pytest.mark.parametrize(
        ("body", "says"),
        [
            (b"done", "not JSON"),
            (b"", "not JSON"),
            (b'["done"]', "JSON object"),
            (b'{"outcome": "ok"}', "outcome must be one of done, fail, extend"),
            (b"{}", "outcome must be one of"),
            (b'{"outcome": "done", "why": 1}', "unknown field(s): why"),
            (b'{"outcome": "done", "delay_s": 5}', "delay_s goes only with outcome fail"),
            (b'{"outcome": "fail", "delay_s": -1}', "from 0 to 43200"),
            (b'{"outcome": "fail", "delay_s": 43201}', "from 0 to 43200"),
            (b'{"outcome": "fail", "delay_s": 1.5}', "whole number"),
            (b'{"outcome": "fail", "delay_s": true}', "whole number"),
            (b"[" * 100000, "not JSON"),
        ],
    )
    def test_invalid_says_why(self, body: bytes, says: str) -> None:
        with pytest.raises(AckError) as raised:
            parse_ack(body)
        assert says in str(raised.value)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """An :class:`AsyncJobs` whose callbacks record what they were asked to do."""

    def __init__(self, *, max_jobs: int = 3, deadline_s: float = 60, visibility_timeout_s: int = 30) -> None:
        self.clock = Clock()
        self.counters = Counters()
        self.finished: list[tuple[Job, Ack]] = []
        self.released: list[Job] = []
        self.jobs = AsyncJobs(
            AsyncPolicy(BASE, max_jobs, deadline_s, visibility_timeout_s),
            self.counters,
            finish=self._finish,
            release=self.released.append,
            spawn=self._spawn,
            clock=self.clock,
        )

    async def _finish(self, job: Job, ack: Ack) -> None:
        self.finished.append((job, ack))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Run the callback to its end at once: it never awaits anything real here.
        with pytest.raises(StopIteration):
            coro.send(None)

    def begin(self, n: int = 1, received_at: float | None = None) -> tuple[Job, str]:
        message = Message(f"id-{n}", f"rh-{n}", "body", received_at=received_at)
        request = Request("/", b"body", {})
        job = self.jobs.begin(message, "body", request)
        url = request.headers[ACK_HEADER]
        return job, url.rsplit("/", 1)[1]

    def held(self, n: int = 1, received_at: float | None = None) -> tuple[Job, str]:
        job, token = self.begin(n, received_at)
        assert self.jobs.answered(job, ACCEPTED)
        return job, token

    def ack(self, token: str, body: bytes) -> tuple[int, dict[str, object]]:
        answer = self.jobs.acknowledge(token, body)
        return answer.status, answer.body


DONE = b'{"outcome": "done"}'
FAIL = b'{"outcome": "fail"}'
EXTEND = b'{"outcome": "extend"}'


class TestTokens:
    def test_every_post_gets_its_own_unguessable_url_on_the_health_server(self) -> None:
        h = Harness()
        message = Message("id", "rh", "body")
        urls = set()
        for _ in range(50):
            request = Request("/", b"", {})
            h.jobs.begin(message, "body", request)
            urls.add(request.headers[ACK_HEADER])
        assert len(urls) == 50
        for url in urls:
            prefix, token = url.rsplit("/", 1)
            assert prefix == f"{BASE}/ack"
            assert len(token) >= 32  # 192 random bits


class TestAnswers:
    def test_done_is_applied_once_then_repeats_are_answered_without_effect(self) -> None:
        h = Harness()
        _job, token = h.held()
        assert h.jobs.held == 1
        assert h.ack(token, DONE) == (200, {"status": "applied", "outcome": "done"})
        assert [(j.message.message_id, a) for j, a in h.finished] == [("id-1", Ack("done"))]
        assert h.jobs.held == 0
        # The same outcome again (a retry of a lost answer): 200, nothing happens a second time.
        assert h.ack(token, DONE) == (200, {"status": "already-applied", "outcome": "done"})
        # Another outcome: a conflict, naming the outcome that settled it.
        assert h.ack(token, FAIL) == (409, {"error": "already acknowledged", "outcome": "done"})
        assert h.ack(token, EXTEND)[0] == 409
        assert len(h.finished) == 1
        assert h.counters.async_acks == {"done": 1, "fail": 0, "extend": 0}

    def test_fail_carries_its_delay(self) -> None:
        h = Harness()
        _job, token = h.held()
        assert h.ack(token, b'{"outcome": "fail", "delay_s": 120}')[0] == 200
        assert h.finished[0][1] == Ack("fail", 120)
        assert h.counters.async_acks["fail"] == 1

    def test_unknown_token_is_404_and_bad_body_400(self) -> None:
        h = Harness()
        _job, token = h.held()
        assert h.ack("no-such-token", DONE) == (404, {"error": "unknown acknowledgement token"})
        status, body = h.ack(token, b"{")
        assert status == 400 and "not JSON" in str(body["error"])
        assert h.jobs.held == 1 and not h.finished

    def test_a_post_answered_otherwise_settles_the_message_itself(self) -> None:
        h = Harness()
        job, token = h.begin()
        assert not h.jobs.answered(job, DeliveryResult(200, None, 0.01))
        assert h.ack(token, DONE)[0] == 409
        assert h.jobs.held == 0 and not h.finished

    def test_an_ack_before_the_202_arrives_is_applied_with_it(self) -> None:
        h = Harness()
        job, token = h.begin()
        assert h.ack(token, EXTEND)[0] == 200
        assert h.ack(token, DONE) == (200, {"status": "recorded", "outcome": "done"})
        assert h.ack(token, FAIL)[0] == 409
        assert not h.finished
        assert h.jobs.answered(job, ACCEPTED)
        assert [a for _j, a in h.finished] == [Ack("done")]
        assert h.jobs.held == 0

    def test_closed_registry_answers_503_and_hands_back_held_messages(self) -> None:
        h = Harness()
        _job, token = h.held(1)
        h.held(2)
        h.begin(3)  # still posting: not held, not returned
        assert sorted(m.message_id for m in h.jobs.close()) == ["id-1", "id-2"]
        assert h.ack(token, DONE)[0] == 503
        assert not h.finished and not h.released


class TestDeadlines:
    def test_a_job_past_its_deadline_is_released_and_a_late_ack_is_gone(self) -> None:
        h = Harness(deadline_s=60)
        _job, token = h.held(1)
        _job2, token2 = h.held(2)
        h.clock.now += 59
        assert h.jobs.expire_due() == 0
        assert h.ack(token2, EXTEND)[0] == 200  # a sign of life: 60 s more from now
        h.clock.now += 1
        assert h.jobs.expire_due() == 1
        assert [j.message.message_id for j in h.released] == ["id-1"]
        assert h.counters.async_jobs_expired == 1
        status, body = h.ack(token, DONE)
        assert status == 410 and "released for redelivery" in str(body["error"])
        h.clock.now += 59.5
        assert h.jobs.expire_due() == 1
        assert h.jobs.held == 0
        assert h.counters.async_acks == {"done": 0, "fail": 0, "extend": 1}

    def test_the_deadline_never_passes_the_12_hour_visibility_limit(self) -> None:
        h = Harness(deadline_s=43200, visibility_timeout_s=30)
        received_at = h.clock.now - 43000  # received almost 12 hours ago
        _job, token = h.held(1, received_at=received_at)
        status, body = h.ack(token, EXTEND)
        assert status == 200
        # The heartbeat's last extension (30 s) must still end within 12 h of the receive.
        assert body["deadline_in_s"] == pytest.approx(43200 - 43000 - 30)
        h.clock.now = received_at + 43200 - 30
        assert h.jobs.expire_due() == 1


class TestBound:
    async def test_reservations_and_held_jobs_never_exceed_max_jobs(self) -> None:
        h = Harness(max_jobs=2)
        await h.jobs.reserve()
        await h.jobs.reserve()
        third = asyncio.create_task(h.jobs.reserve())
        await asyncio.sleep(0)
        assert not third.done()
        job, token = h.begin(1)
        assert h.jobs.answered(job, ACCEPTED)  # the first reservation is a held job now
        await asyncio.sleep(0)
        assert not third.done()
        h.jobs.unreserve()  # the second one was given back (its POST answered 200)
        await asyncio.wait_for(third, 1)
        fourth = asyncio.create_task(h.jobs.reserve())
        await asyncio.sleep(0)
        assert not fourth.done()
        assert h.ack(token, DONE)[0] == 200  # settling the held job frees its place
        await asyncio.wait_for(fourth, 1)

    async def test_shutdown_lets_waiting_reservers_go(self) -> None:
        h = Harness(max_jobs=1)
        await h.jobs.reserve()
        waiting = asyncio.create_task(h.jobs.reserve())
        await asyncio.sleep(0)
        assert not waiting.done()
        h.jobs.stop_reserving()
        await asyncio.wait_for(waiting, 1)


class TestFinish:
    """How a dispatcher settles a held job by its acknowledgement (the SQS calls it leads to)."""

    async def finish(
        self, ack: Ack, *, held_s: float = 0.0, error_visibility: int | None = 7
    ) -> RecordingSQS:
        sqs = RecordingSQS()
        leases, counters = LeaseTable(), Counters()
        settler = Settler(sqs, leases, counters, max_wait_s=0.01)  # type: ignore[arg-type]
        tasks = TaskSet()
        settler.start(tasks)
        shared = DispatchShared(
            channel=Channel(10),
            leases=leases,
            worker=None,  # type: ignore[arg-type]  # a held job is not POSTed again
            static=StaticHeaders("application/json", "ua", "q", "/"),
            policy=DeliveryPolicy(frozenset({200}), error_visibility, 345600, 43200),
            settler=settler,
            counters=counters,
        )
        message = Message("id", "rh", "body", received_at=time.monotonic() - held_s)
        leases.add([message])
        job = Job(message, "token", "body", result=ACCEPTED)
        await Dispatcher(shared).finish_job(job, ack)
        await settler.flush(5)
        assert message not in leases
        self.counters = counters
        return sqs

    async def test_done_deletes(self) -> None:
        sqs = await self.finish(Ack("done"))
        assert (sqs.deletes, sqs.changes) == (["rh"], [])
        # The delivery was counted at the 202; the acknowledgement only decides its outcome.
        assert (self.counters.delivered, self.counters.succeeded, self.counters.deleted) == (0, 1, 1)

    async def test_fail_takes_the_error_visibility_or_its_own_delay(self) -> None:
        assert (await self.finish(Ack("fail"))).changes == [("rh", 7)]
        assert (await self.finish(Ack("fail", 120))).changes == [("rh", 120)]
        assert (await self.finish(Ack("fail"), error_visibility=None)).changes == []  # left to its lease
        assert self.counters.failed == 1

    async def test_a_fail_delay_never_passes_the_12_hour_limit(self) -> None:
        sqs = await self.finish(Ack("fail", 43200), held_s=43000)
        [(handle, delay)] = sqs.changes
        assert handle == "rh" and 199 <= delay <= 200
