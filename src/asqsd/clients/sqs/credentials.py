"""Credentials that explain themselves: what went wrong, what to set, one log line per change.

* :func:`explain` maps a failure (an SQS error code, a botocore credential exception, or the
  exception itself) to a :class:`CredentialProblem`: the log event naming the likely cause
  (``credentials-missing``, ``credentials-imds-unreachable``, ``credentials-expired``,
  ``credentials-invalid``, ``credentials-unavailable``) and a hint saying what to set. Failures
  that are not about credentials map to None.
* :func:`explain_missing` refines "the chain found nothing" with what the instance metadata
  service did (:mod:`asqsd.clients.sqs.imds`).
* :class:`CredentialStatus` holds the daemon's current problem and logs only when it changes, so
  a retry loop never repeats the line; readiness reads it.
* :func:`wait_for_credentials` resolves the session's credentials at start-up with a capped
  backoff, before any client is created: a botocore client made without credentials keeps
  failing even after they appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from asqsd.backoff import Backoff
from asqsd.clients.sqs.imds import ImdsProbe, probe_imds
from asqsd.errors import SQSError
from asqsd.logs import get_logger

log = get_logger("credentials")

MISSING = "credentials-missing"
IMDS_UNREACHABLE = "credentials-imds-unreachable"
EXPIRED = "credentials-expired"
INVALID = "credentials-invalid"
UNAVAILABLE = "credentials-unavailable"

_SET_KEYS = "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
_GIVE_ROLE = "give the task or pod a role (ECS task role, EKS IRSA or Pod Identity)"


@dataclass(frozen=True, slots=True)
class CredentialProblem:
    """A credential failure: ``cause`` is the log event, ``hint`` what to set or check."""

    cause: str
    hint: str


_MISSING = CredentialProblem(
    MISSING,
    "no credentials in the environment, the AWS config files, a container or web-identity role, or "
    f"an instance profile: attach an IAM instance profile to the instance, {_GIVE_ROLE}, {_SET_KEYS}",
)
_MISSING_IMDS_DISABLED = CredentialProblem(
    MISSING,
    "AWS_EC2_METADATA_DISABLED is true, so the instance profile is not read: unset it, "
    f"{_GIVE_ROLE}, {_SET_KEYS}",
)
_MISSING_NO_ROLE = CredentialProblem(
    MISSING,
    "the instance metadata service answers but the instance has no IAM role: attach an instance "
    f"profile (aws ec2 associate-iam-instance-profile), {_SET_KEYS}",
)
_IMDS_UNREACHABLE = CredentialProblem(
    IMDS_UNREACHABLE,
    "the instance metadata service did not answer its IMDSv2 token request; inside a container on "
    "EC2 the answer needs two network hops: raise the instance's hop limit (aws ec2 "
    "modify-instance-metadata-options --http-put-response-hop-limit 2), or "
    f"{_GIVE_ROLE}, {_SET_KEYS}",
)
_EXPIRED = CredentialProblem(
    EXPIRED,
    "the credentials have expired: role credentials (instance profile, task role, IRSA) are "
    "refreshed automatically and asqsd keeps retrying; temporary keys set in AWS_SESSION_TOKEN or a "
    "profile are never refreshed, so replace them with a role or restart with fresh ones; also "
    "check that the clock is synchronised",
)
_INVALID = CredentialProblem(
    INVALID,
    "AWS does not accept the access key, or the signature does not match its secret: check that "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile's keys) belong together and are "
    "active",
)
_UNAVAILABLE = CredentialProblem(
    UNAVAILABLE,
    "a configured credential source failed (the error names it): check AWS_PROFILE and the AWS "
    "config files, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI (ECS), AWS_ROLE_ARN and "
    "AWS_WEB_IDENTITY_TOKEN_FILE (IRSA); asqsd keeps retrying",
)

# Error codes (SQS and STS) and botocore exception names, as SQSError.code carries them.
_BY_CODE: dict[str, CredentialProblem] = {
    "NoCredentialsError": _MISSING,
    "ExpiredToken": _EXPIRED,
    "ExpiredTokenException": _EXPIRED,
    "InvalidClientTokenId": _INVALID,
    "UnrecognizedClientException": _INVALID,
    "InvalidAccessKeyId": _INVALID,
    "SignatureDoesNotMatch": _INVALID,
    "InvalidSignatureException": _INVALID,
    "PartialCredentialsError": _UNAVAILABLE,
    "CredentialRetrievalError": _UNAVAILABLE,
    "ProfileNotFound": _UNAVAILABLE,
    "InvalidConfigError": _UNAVAILABLE,
    "InvalidIMDSEndpointError": _UNAVAILABLE,
    "InvalidIMDSEndpointModeError": _UNAVAILABLE,
    "InvalidIdentityToken": _UNAVAILABLE,
    "IDPCommunicationError": _UNAVAILABLE,
}

# SQS's answers to expired credentials: worth retrying, since role credentials refresh themselves.
EXPIRED_CODES = frozenset(code for code, problem in _BY_CODE.items() if problem is _EXPIRED)


def explain(error: BaseException | str) -> CredentialProblem | None:
    """The credential problem an error code or exception stands for; None if it is not one."""
    if isinstance(error, str):
        code = error
    elif isinstance(error, SQSError):
        code = error.code
    elif isinstance(error, ClientError):  # STS, while a role's credentials are fetched
        code = str(error.response.get("Error", {}).get("Code", ""))
    elif isinstance(error, RuntimeError) and "still expired" in str(error):
        # botocore's refreshable credentials: "... refreshed credentials are still expired."
        return _EXPIRED
    else:
        code = type(error).__name__
    return _BY_CODE.get(code)


def explain_missing(probe: ImdsProbe) -> CredentialProblem:
    """Why the chain found no credentials, from what the instance metadata service did."""
    if probe.answer == "no-answer":
        return _IMDS_UNREACHABLE
    if probe.answer == "disabled":
        return _MISSING_IMDS_DISABLED
    if probe.answer == "no-role":
        return _MISSING_NO_ROLE
    return _MISSING


class CredentialStatus:
    """The daemon's current credential problem (None: none known); logged once per change.

    Calls overlap (a long poll sent before credentials expired can succeed after a newer call was
    refused), so only a call sent after the last change can change the state again: the state
    does not flap, and each change is one line.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.problem: CredentialProblem | None = None
        self._clock = clock
        self._changed_at = float("-inf")

    @property
    def cause(self) -> str | None:
        """The current problem's event name (``credentials-missing`` ...), or None."""
        return self.problem.cause if self.problem is not None else None

    def failed(self, problem: CredentialProblem, **context: Any) -> None:
        """A credential failure; logs ``problem.cause`` with its hint unless it is already the state."""
        if problem != self.problem:
            log.warning(problem.cause, hint=problem.hint, **context)
            self._change(problem)

    def resolved(self, source: str) -> None:
        """Credentials were found (``source``: botocore's provider name, e.g. ``iam-role``)."""
        after = {"after": self.cause} if self.problem is not None else {}
        log.info("credentials-found", source=source, **after)
        self._change(None)

    def observe(self, operation: str, error: Exception | None, sent_at: float) -> None:
        """After an AWS call sent at ``sent_at``: a credential failure sets the problem, a success
        clears it; a call sent before the last change says nothing new and is ignored."""
        if sent_at < self._changed_at:
            return
        if error is None:
            if self.problem is not None:
                log.info("credentials-ok", operation=operation, after=self.problem.cause)
                self._change(None)
            return
        problem = explain(error)
        if problem is not None:
            self.failed(problem, operation=operation, error=str(error))

    def _change(self, problem: CredentialProblem | None) -> None:
        self.problem = problem
        self._changed_at = self._clock()


Probe = Callable[[Any], Awaitable[ImdsProbe]]


async def wait_for_credentials(
    session: Any,
    status: CredentialStatus,
    stopping: asyncio.Event,
    backoff: Backoff,
    probe: Probe = probe_imds,
) -> bool:
    """Resolve ``session``'s credentials, retrying after each failure; False if stopped first.

    Each failure is explained (the IMDS is probed when the chain found nothing) and logged through
    ``status``, so a lasting problem gives one line however many retries it takes.
    """
    while not stopping.is_set():
        source = await _attempt(session, status, probe)
        if source is not None:
            status.resolved(source)
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(backoff.next_delay()):
                await stopping.wait()
    return False


async def _attempt(session: Any, status: CredentialStatus, probe: Probe) -> str | None:
    """One pass of the chain; the provider's name, or None after reporting why it failed."""
    try:
        credentials = await session.get_credentials()
        if credentials is not None:
            # Deferred sources (web identity, SSO) fetch only now: explain their failures here,
            # not on the first SQS call.
            await credentials.get_frozen_credentials()
            return str(credentials.method)
    except (BotoCoreError, ClientError, RuntimeError) as exc:
        status.failed(explain(exc) or _UNAVAILABLE, error=str(exc))
        return None
    imds = await probe(session)
    status.failed(explain_missing(imds), imds=imds.endpoint, imds_answer=imds.answer)
    return None
