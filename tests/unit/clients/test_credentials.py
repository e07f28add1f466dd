"""Credential problems: what each failure is called, when it is logged, and the start-up wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError, CredentialRetrievalError, NoCredentialsError
from structlog.testing import capture_logs

from asqsd.backoff import Backoff
from asqsd.clients.sqs.credentials import (
    EXPIRED,
    IMDS_UNREACHABLE,
    INVALID,
    MISSING,
    UNAVAILABLE,
    CredentialStatus,
    explain,
    explain_missing,
    wait_for_credentials,
)
from asqsd.clients.sqs.imds import ImdsAnswer, ImdsProbe
from asqsd.clients.sqs.wire import is_retryable
from asqsd.errors import SQSError


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("ExpiredToken", EXPIRED),  # SQS, query-compatible code
        ("ExpiredTokenException", EXPIRED),  # the JSON protocol's shape name
        ("InvalidClientTokenId", INVALID),
        ("SignatureDoesNotMatch", INVALID),
        ("UnrecognizedClientException", INVALID),
        ("NoCredentialsError", MISSING),  # the lean client's code for botocore's exception
        ("CredentialRetrievalError", UNAVAILABLE),
        (SQSError("ReceiveMessage", "ExpiredToken", "expired", retryable=True), EXPIRED),
        (NoCredentialsError(), MISSING),
        (CredentialRetrievalError(provider="container-role", error_msg="refused"), UNAVAILABLE),
        (ClientError({"Error": {"Code": "ExpiredTokenException"}}, "AssumeRoleWithWebIdentity"), EXPIRED),
        (
            RuntimeError("Credentials were refreshed, but the refreshed credentials are still expired."),
            EXPIRED,
        ),
    ],
)
def test_credential_failures_are_named(error: BaseException | str, cause: str) -> None:
    """Codes and exceptions map to the event that names the cause, each with a hint."""
    problem = explain(error)
    assert problem is not None and problem.cause == cause
    assert problem.hint


@pytest.mark.parametrize(
    "error",
    [
        "AccessDenied",  # a permission, not the credentials
        "QueueDoesNotExist",
        "ThrottlingException",
        SQSError("ReceiveMessage", "InternalError", "boom", retryable=True),
        RuntimeError("something else"),
        OSError("connection reset"),
    ],
)
def test_other_failures_are_not_credential_problems(error: BaseException | str) -> None:
    assert explain(error) is None


@pytest.mark.parametrize(
    ("answer", "cause", "says"),
    [
        ("no-answer", IMDS_UNREACHABLE, "--http-put-response-hop-limit 2"),
        ("disabled", MISSING, "AWS_EC2_METADATA_DISABLED"),
        ("no-role", MISSING, "no IAM role"),
        ("unreachable", MISSING, "attach an IAM instance profile"),
        ("role", MISSING, "attach an IAM instance profile"),
    ],
)
def test_missing_credentials_explained_by_the_imds(answer: ImdsAnswer, cause: str, says: str) -> None:
    """What the instance metadata service did decides the cause and the hint."""
    problem = explain_missing(ImdsProbe("http://127.0.0.1:9/", 1.0, answer))
    assert problem.cause == cause
    assert says in problem.hint


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException"])
def test_expired_credentials_are_retryable(code: str) -> None:
    """SQS's 403 for expired credentials is retried (role credentials refresh themselves)."""
    assert is_retryable(code, 403)


@pytest.mark.parametrize("code", ["InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied"])
def test_rejected_keys_and_permissions_are_not_retryable(code: str) -> None:
    """An unknown key, a wrong secret or a missing permission does not fix itself."""
    assert not is_retryable(code, 403)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def expired(operation: str = "ReceiveMessage") -> SQSError:
    return SQSError(
        operation, "ExpiredToken", "The security token included in the request is expired", retryable=True
    )


def test_status_logs_once_per_change() -> None:
    """Many failures, one line; the first success after them, one line; then a new failure, one line."""
    clock = Clock()
    status = CredentialStatus(clock)
    with capture_logs() as logs:
        for _ in range(10):
            clock.now += 1
            status.observe("ReceiveMessage", expired(), clock.now)
        clock.now += 1
        status.observe("ReceiveMessage", None, clock.now)
        status.observe("DeleteMessageBatch", None, clock.now + 1)
        clock.now += 2
        status.observe("ReceiveMessage", expired(), clock.now)
    assert [e["event"] for e in logs] == ["credentials-expired", "credentials-ok", "credentials-expired"]
    assert logs[0]["operation"] == "ReceiveMessage" and "refreshed automatically" in logs[0]["hint"]
    assert logs[1]["after"] == "credentials-expired"
    assert status.cause == EXPIRED


def test_calls_sent_before_a_change_do_not_flip_it() -> None:
    """A long poll sent before the credentials were refused, succeeding after: the problem stays."""
    clock = Clock()
    status = CredentialStatus(clock)
    long_poll_sent = clock.now
    clock.now += 1
    status.observe("ReceiveMessage", expired(), clock.now)
    clock.now += 1
    with capture_logs() as logs:
        status.observe("ReceiveMessage", None, long_poll_sent)
    assert status.cause == EXPIRED and logs == []


def test_other_errors_leave_the_state() -> None:
    status = CredentialStatus(Clock())
    with capture_logs() as logs:
        status.observe(
            "ReceiveMessage", SQSError("ReceiveMessage", "InternalError", "x", retryable=True), 200
        )
    assert status.problem is None and logs == []


class Credentials:
    method = "container-role"

    async def get_frozen_credentials(self) -> object:
        return object()


class Session:
    """A credential chain that fails as scripted, then finds credentials."""

    def __init__(self, *failures: BaseException | None) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def get_credentials(self) -> Credentials | None:
        self.calls += 1
        if self.failures:
            failure = self.failures.pop(0)
            if failure is None:
                return None  # the chain found nothing
            raise failure
        return Credentials()


async def no_answer(_session: Any) -> ImdsProbe:
    return ImdsProbe("http://127.0.0.1:9/", 1.0, "no-answer")


async def test_wait_logs_each_cause_once_and_names_the_source() -> None:
    """Two kinds of failure, retried: one line each; then the source that worked."""
    retrieval = CredentialRetrievalError(provider="container-role", error_msg="connection refused")
    session = Session(None, None, retrieval, retrieval)
    status = CredentialStatus()
    with capture_logs() as logs:
        found = await wait_for_credentials(
            session, status, asyncio.Event(), Backoff(base_s=0.001, cap_s=0.001, jitter=0.0), no_answer
        )
    assert found and session.calls == 5
    assert [e["event"] for e in logs] == [IMDS_UNREACHABLE, UNAVAILABLE, "credentials-found"]
    assert logs[0]["imds_answer"] == "no-answer"
    assert "container-role" in logs[1]["error"]
    assert (logs[2]["source"], logs[2]["after"]) == ("container-role", UNAVAILABLE)
    assert status.problem is None


async def test_wait_ends_when_stopped() -> None:
    """A stop request ends the wait (the daemon then exits cleanly): False, no credentials."""
    stopping = asyncio.Event()
    session = Session(*([None] * 1000))

    async def probe_then_stop(_session: Any) -> ImdsProbe:
        stopping.set()
        return await no_answer(_session)

    found = await wait_for_credentials(
        session, CredentialStatus(), stopping, Backoff(base_s=60, cap_s=60), probe_then_stop
    )
    assert not found and session.calls == 1
