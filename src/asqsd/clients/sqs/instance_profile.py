"""Instance-profile credentials from the EC2 instance metadata service (IMDS), fetched as botocore does.

On an Elastic Beanstalk or EC2 instance the credentials come from the instance profile: botocore's
chain finds nothing in the environment or the files, then its ``InstanceMetadataProvider`` asks the
IMDS. Building that chain imports botocore.session, botocore.credentials, botocore.utils,
botocore.httpsession and urllib3 (about 30 ms and 4-7 MiB at every start). When the chain would
certainly end at that provider (:func:`instance_profile_settings`), asqsd asks the IMDS itself, with
the standard library's http.client and botocore's protocol and semantics:

* an IMDSv2 token (PUT, TTL 21600 s), then the role name and its credentials (GET, with the token);
  without a token (the PUT timed out, was refused with 403, 404 or 405, or failed every attempt)
  the GETs go without one (IMDSv1), unless ``AWS_EC2_METADATA_V1_DISABLED`` forbids it; a 400
  ends the lookup; ``metadata_service_timeout`` and ``metadata_service_num_attempts`` apply;
* credentials that have expired or are about to ("static stability": the IMDS may be serving old
  ones) get a new expiry 17 to 25 minutes ahead, so the daemon keeps signing and retries later;
* :class:`InstanceProfileCredentials` refreshes as botocore's ``RefreshableCredentials``: from 15
  minutes before expiry (a fetch that raises is logged and the old keys kept; an IMDS that gives
  nothing raises CredentialRetrievalError, as in botocore), blocking from 10 minutes before (any
  failure is raised); the fetch runs in a worker thread, never on the event loop.

Everything else (keys in the environment, a profile, a shared file, a container or web-identity
role, a proxy for the IMDS ...) goes through botocore's chain as before.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import json
import os
import platform
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import botocore
from botocore.exceptions import CredentialRetrievalError, MetadataRetrievalError

from asqsd.addresses import plain_host, url_address, url_host
from asqsd.clients.sqs.aws_config import FrozenEnvCredentials, no_shared_config
from asqsd.clients.sqs.imds import (
    IPV4_ENDPOINT,
    IPV6_ENDPOINT,
    ROLE_PATH,
    TOKEN_PATH,
    imds_endpoint,
    imds_url,
)
from asqsd.clients.sqs.network import endpoint_proxy_url
from asqsd.logs import get_logger

log = get_logger("credentials")

METHOD = "iam-role"  # botocore's InstanceMetadataProvider.METHOD

# Set (even empty), each lets a provider that botocore tries before the instance profile answer,
# or stops botocore from asking the IMDS at all: botocore's chain then decides, as before.
_OTHER_SOURCES = (
    # EnvProvider
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    # AssumeRoleWithWebIdentityProvider
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    # OriginalEC2Provider, BotoProvider
    "AWS_CREDENTIAL_FILE",
    "BOTO_CONFIG",
    # ContainerProvider
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    # InstanceMetadataFetcher: switched off (the chain finds nothing; the probe says why)
    "AWS_EC2_METADATA_DISABLED",
)
_BOTO_FILES = ("/etc/boto.cfg", "~/.boto")  # BotoProvider's files when BOTO_CONFIG is not set

# botocore's IMDSFetcher and InstanceMetadataFetcher.
_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
_TOKEN_HEADER = "x-aws-ec2-metadata-token"  # noqa: S105 - a header name
_TOKEN_TTL_S = "21600"  # noqa: S105 - seconds, not a secret
_TOKEN_STATUSES_FOR_V1 = (404, 403, 405)  # no token: IMDSv1 is tried
_FIELDS = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
_EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_V1_DISABLED = "Unable to retrieve token for use in IMDSv2 call and IMDSv1 has been disabled"

# botocore's RefreshableCredentials: refresh from 15 minutes before expiry, block from 10.
ADVISORY_REFRESH_S = 15 * 60
MANDATORY_REFRESH_S = 10 * 60
_STILL_EXPIRED = "Credentials were refreshed, but the refreshed credentials are still expired."
_REFRESH_KEYS = ("access_key", "secret_key", "token", "expiry_time")

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """The current time, time-zone aware (what expiry times are compared with)."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class ImdsSettings:
    """How botocore would ask the IMDS: base URL, per-request timeout, attempts per request,
    whether IMDSv1 is forbidden, and the User-Agent its session sends."""

    endpoint: str
    timeout_s: float
    num_attempts: int
    v1_disabled: bool
    user_agent: str


def instance_profile_settings(session: Any, env: Mapping[str, str]) -> ImdsSettings | None:
    """How to ask the IMDS when botocore's chain for ``session`` would certainly end at the instance
    profile and asqsd can ask it exactly as botocore would; None otherwise (botocore's chain decides).

    That is: no profile and no shared file, none of the variables of an earlier source, no boto2
    file, no awscrt (it changes botocore's User-Agent), a plain ``http://`` endpoint and no proxy
    for it. ``session``: its configuration variables (an
    :class:`~asqsd.clients.sqs.aws_config.AwsConfigSession`, which sets no instance variable).
    """
    if session.instance_variables() or not no_shared_config(env) or any(v in env for v in _OTHER_SOURCES):
        return None
    if any(os.path.isfile(os.path.expanduser(path)) for path in _BOTO_FILES):
        return None
    if importlib.util.find_spec("awscrt") is not None:
        return None
    endpoint = imds_endpoint(session)
    if endpoint not in (IPV4_ENDPOINT, IPV6_ENDPOINT) and not _plain_http(endpoint):
        return None
    if endpoint_proxy_url(endpoint, None) is not None:  # botocore's fetcher would use the proxy
        return None
    return ImdsSettings(
        endpoint=endpoint,
        timeout_s=session.get_config_variable("metadata_service_timeout"),
        num_attempts=session.get_config_variable("metadata_service_num_attempts"),
        v1_disabled=bool(session.get_config_variable("ec2_metadata_v1_disabled")),
        user_agent=botocore_user_agent(env),
    )


def _plain_http(endpoint: str) -> bool:
    # A custom endpoint botocore certainly accepts, and http.client reaches as urllib3 would.
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - parsed for its ValueError
    except ValueError:  # a malformed port: botocore's error, from botocore
        return False
    return parts.scheme == "http" and parts.username is None and plain_host(endpoint)


def botocore_user_agent(env: Mapping[str, str]) -> str:
    """``botocore.session.get_session().user_agent()`` without awscrt: the IMDS requests' User-Agent."""
    agent = (
        f"Botocore/{botocore.__version__} Python/{platform.python_version()} "
        f"{platform.system()}/{platform.release()}"
    )
    if env.get("AWS_EXECUTION_ENV") is not None:
        agent += f" exec-env/{env['AWS_EXECUTION_ENV']}"
    return agent


class _Retryable(Exception):
    """A failed request botocore tries again (its RETRYABLE_HTTP_ERRORS: no connection, closed, timeout)."""


class _ReadTimeout(_Retryable):
    """No answer in time: for the token request, botocore goes on without a token at once."""


class _GiveUp(Exception):
    """Every attempt failed, or the IMDS refused the token request (400): no credentials this time."""


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str | None

    def text(self) -> str:
        """The body decoded as botocore's AWSResponse.text decodes it (charset, ISO-8859-1 for text/*)."""
        return self.body.decode(self._encoding() or "utf-8")

    def _encoding(self) -> str | None:
        if not self.content_type:
            return None
        import email.message  # here: an IMDS answer names its charset rarely (~2 ms to import)

        message = email.message.Message()
        message["content-type"] = self.content_type
        charset = message.get_param("charset")
        if charset is not None:
            return str(charset)
        return "ISO-8859-1" if "text" in self.content_type else None


def _needs_retry(response: _Response) -> bool:
    return response.status != 200 or not response.body


def _credentials_need_retry(response: _Response) -> bool:
    if _needs_retry(response):
        return True
    try:
        json.loads(response.text())
    except ValueError:
        return True
    return False


class InstanceMetadataFetcher:
    """botocore's ``InstanceMetadataFetcher.retrieve_iam_role_credentials``, over http.client (blocking)."""

    def __init__(self, settings: ImdsSettings, clock: Clock = utc_now) -> None:
        self._settings = settings
        self._clock = clock

    def retrieve(self) -> dict[str, Any]:
        """The role's credentials in botocore's form (``role_name``, ``access_key``, ``secret_key``,
        ``token``, ``expiry_time``); ``{}`` when the IMDS gave none."""
        try:
            token = self._token()
            role = self._get(ROLE_PATH, _needs_retry, token).text()
            raw = json.loads(self._get(ROLE_PATH + role, _credentials_need_retry, token).text())
        except _GiveUp:
            return {}
        if not all(field in raw for field in _FIELDS):  # e.g. {"Code": ..., "Message": ...}
            return {}
        credentials = {
            "role_name": role,
            "access_key": raw["AccessKeyId"],
            "secret_key": raw["SecretAccessKey"],
            "token": raw["Token"],
            "expiry_time": raw["Expiration"],
        }
        self._extend_if_expiring(credentials)
        return credentials

    def _token(self) -> str | None:
        for _ in range(self._settings.num_attempts):
            try:
                response = self._send("PUT", TOKEN_PATH, {_TTL_HEADER: _TOKEN_TTL_S})
            except _ReadTimeout:
                return None
            except _Retryable:
                continue
            if response.status == 200:
                return response.text()
            if response.status in _TOKEN_STATUSES_FOR_V1:
                return None
            if response.status == 400:
                raise _GiveUp
        return None

    def _get(self, path: str, needs_retry: Callable[[_Response], bool], token: str | None) -> _Response:
        if not token and self._settings.v1_disabled:
            raise MetadataRetrievalError(error_msg=_V1_DISABLED)
        headers = {} if token is None else {_TOKEN_HEADER: token}
        for _ in range(self._settings.num_attempts):
            try:
                response = self._send("GET", path, headers)
            except _Retryable:
                continue
            if not needs_retry(response):
                return response
        raise _GiveUp

    def _send(self, method: str, path: str, headers: dict[str, str]) -> _Response:
        """One request on its own connection; _Retryable or _ReadTimeout as botocore classes failures."""
        import http.client  # here: only a daemon that asks the IMDS needs it (about 2 ms)

        url = imds_url(self._settings.endpoint, path)
        address, parts = url_address(url), urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection = http.client.HTTPConnection(
            url_host(address.host), address.port, timeout=self._settings.timeout_s
        )
        try:
            try:
                connection.connect()
            except OSError as exc:  # refused, unreachable, or a connect timeout: tried again
                raise _Retryable(str(exc)) from exc
            try:
                connection.request(
                    method, target, headers={**headers, "User-Agent": self._settings.user_agent}
                )
                response = connection.getresponse()
                return _Response(response.status, response.read(), response.getheader("content-type"))
            except TimeoutError as exc:
                raise _ReadTimeout(str(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:  # closed mid-way: tried again
                raise _Retryable(str(exc)) from exc
        finally:
            connection.close()

    def _extend_if_expiring(self, credentials: dict[str, Any]) -> None:
        # Static stability: credentials the IMDS serves past (or near) their expiry are kept a while.
        try:
            expiration = datetime.datetime.strptime(credentials["expiry_time"], _EXPIRY_FORMAT)
        except ValueError:
            return
        offset = datetime.timedelta(seconds=ADVISORY_REFRESH_S + random.randint(120, 600))
        now = self._clock().astimezone(datetime.UTC).replace(tzinfo=None)
        if now >= expiration - offset:
            credentials["expiry_time"] = (now + offset).strftime(_EXPIRY_FORMAT)


def parse_expiry(value: str) -> datetime.datetime:
    """An expiry time as botocore parses it (dateutil); IMDS's usual form without importing dateutil."""
    try:
        return datetime.datetime.strptime(value, _EXPIRY_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        from dateutil.parser import parse  # type: ignore[import-untyped]

        parsed: datetime.datetime = parse(value)
        return parsed


class InstanceProfileCredentials:
    """The instance profile's credentials, refreshed as botocore's ``RefreshableCredentials``.

    Fits where :class:`~asqsd.clients.sqs.credential_chain.ThreadedCredentials` does: ``method`` and
    an awaitable ``get_frozen_credentials``. Refreshes run in a worker thread; one at a time: while
    one runs, callers in the advisory window keep the current keys, callers in the mandatory
    window wait for it and then refresh again if still due.
    """

    method = METHOD

    def __init__(
        self, fetcher: InstanceMetadataFetcher, metadata: Mapping[str, Any], clock: Clock = utc_now
    ) -> None:
        self._fetcher = fetcher
        self._clock = clock
        self._lock = asyncio.Lock()
        self._frozen = FrozenEnvCredentials(
            metadata["access_key"], metadata["secret_key"], metadata["token"], None
        )
        self.expiry_time = parse_expiry(metadata["expiry_time"])

    def refresh_needed(self, within_s: float = ADVISORY_REFRESH_S) -> bool:
        """Whether the keys expire within ``within_s`` seconds."""
        return (self.expiry_time - self._clock()).total_seconds() < within_s

    async def get_frozen_credentials(self) -> FrozenEnvCredentials:
        """The current keys, refreshed first when due (see the class)."""
        if not self.refresh_needed():
            return self._frozen
        if not self._lock.locked():
            async with self._lock:
                if self.refresh_needed():
                    await self._refresh(mandatory=self.refresh_needed(MANDATORY_REFRESH_S))
        elif self.refresh_needed(MANDATORY_REFRESH_S):
            async with self._lock:
                if self.refresh_needed(MANDATORY_REFRESH_S):
                    await self._refresh(mandatory=True)
        return self._frozen

    async def _refresh(self, *, mandatory: bool) -> None:
        try:
            metadata = await asyncio.to_thread(self._fetcher.retrieve)
        except Exception as exc:
            # botocore: an advisory refresh that fails keeps the current keys; a mandatory one raises.
            period = "mandatory" if mandatory else "advisory"
            log.warning("credentials-refresh-failed", source=METHOD, period=period, error=str(exc))
            if mandatory:
                raise
            return
        missing = [key for key in _REFRESH_KEYS if key not in metadata]
        if missing:  # the IMDS gave nothing: botocore raises in either window
            raise CredentialRetrievalError(
                provider=METHOD,
                error_msg="Credential refresh failed, response did not contain: " + ", ".join(missing),
            )
        self._frozen = FrozenEnvCredentials(
            metadata["access_key"], metadata["secret_key"], metadata["token"], None
        )
        self.expiry_time = parse_expiry(metadata["expiry_time"])
        if self.refresh_needed(0):
            raise RuntimeError(_STILL_EXPIRED)


def load_instance_profile(
    settings: ImdsSettings, clock: Clock = utc_now
) -> InstanceProfileCredentials | None:
    """The instance profile's credentials, or None when the IMDS gave none (blocking: run it in a
    thread). Raises MetadataRetrievalError as botocore does when IMDSv1 is needed but forbidden."""
    fetcher = InstanceMetadataFetcher(settings, clock)
    metadata = fetcher.retrieve()
    return InstanceProfileCredentials(fetcher, metadata, clock) if metadata else None
