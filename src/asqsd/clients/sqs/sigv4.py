"""SigV4 signing for the lean SQS client, byte-identical to botocore's.

:class:`CachedKeySigV4` derives the signing key once per day and secret key instead of per call;
:class:`BotocoreSigV4` delegates to botocore's SigV4Auth. Tests check both produce the same
Authorization header as botocore for the same request and timestamp (docs/sqs-client.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Protocol
from urllib.parse import quote, urlsplit

from asqsd import __version__
from asqsd.addresses import url_address

_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
# The lean client's User-Agent: names asqsd and its SQS client, as botocore names itself. Not the HTTP
# library: the default transport is asqsd's own, and reading aiohttp's version from its metadata cost
# every start 2-4 ms (a scan of the installed distributions).
USER_AGENT = f"asqsd/{__version__} lean-sqs"


class FrozenCredentials(Protocol):
    """What botocore's ``ReadOnlyCredentials`` offers (a snapshot that cannot change mid-signing)."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def token(self) -> str | None: ...


class RequestSigner(Protocol):
    """Produces the headers of one signed SQS JSON POST."""

    def sign(self, target: str, body: bytes, credentials: FrozenCredentials) -> dict[str, str]:
        """Every header to send (Host included), signed at the current time."""
        ...


def _canonical_path(path: str) -> str:
    """botocore's normalize_url_path, quoted as SigV4 wants it; botocore.utils imported only for a
    path that is not already normal (an empty, ``.``/``..`` or empty segment)."""
    segments = path.split("/")
    if not (path.startswith("/") and all(segments[1:-1]) and not {".", ".."} & set(segments)):
        from botocore.utils import normalize_url_path

        path = normalize_url_path(path)
    return quote(path, safe="/~")


def _trim(value: str) -> str:
    # SigV4 "Trimall": botocore collapses runs of whitespace in header values before signing.
    return " ".join(value.split())


class CachedKeySigV4:
    """SigV4 for SQS JSON POSTs to one endpoint, with the signing key cached per (secret, date).

    It signs exactly the headers botocore signs for these requests (content-type, host, x-amz-date,
    x-amz-security-token when there is a session token, x-amz-target, x-amzn-query-mode), and the
    canonical path/query are computed once because the URL never changes. The expensive parts
    botocore repeats per call (header-map building, URL parsing, four HMACs for the key) are gone;
    what remains is two SHA-256 hashes and one HMAC.
    """

    def __init__(self, url: str, region: str, service: str = "sqs") -> None:
        parts = urlsplit(url)
        self._region = region
        self._service = service
        self._host = url_address(url).host_header
        self._scope_tail = f"/{region}/{service}/aws4_request"
        canonical_path = _canonical_path(parts.path)
        # As botocore's _canonical_query_string_url: split on "&", sort the pairs, re-join as sent.
        pairs = sorted(pair.partition("=")[::2] for pair in parts.query.split("&")) if parts.query else []
        canonical_query = "&".join(f"{key}={value}" for key, value in pairs)
        self._prefix = f"POST\n{canonical_path}\n{canonical_query}\ncontent-type:{JSON_CONTENT_TYPE}\n"
        self._host_line = f"host:{self._host}\n"
        # One-entry cache: (secret key, yyyymmdd) -> signing key. Instance state, so signers for
        # different regions or credentials never share it.
        self._key_for: tuple[str, str] = ("", "")
        self._key = b""

    def _signing_key(self, secret_key: str, datestamp: str) -> bytes:
        if self._key_for != (secret_key, datestamp):
            key = hmac.digest(f"AWS4{secret_key}".encode(), datestamp.encode(), "sha256")
            key = hmac.digest(key, self._region.encode(), "sha256")
            key = hmac.digest(key, self._service.encode(), "sha256")
            self._key = hmac.digest(key, b"aws4_request", "sha256")
            self._key_for = (secret_key, datestamp)
        return self._key

    def sign(self, target: str, body: bytes, credentials: FrozenCredentials) -> dict[str, str]:
        """Headers for one POST of ``body`` to ``AmazonSQS.<target>``, signed now."""
        return self.sign_at(target, body, credentials, time.strftime(_SIGV4_TIMESTAMP, time.gmtime()))

    def sign_at(
        self, target: str, body: bytes, credentials: FrozenCredentials, amz_date: str
    ) -> dict[str, str]:
        """Headers for one POST signed at ``amz_date`` (``YYYYMMDDTHHMMSSZ``, UTC)."""
        token = credentials.token
        if token:
            token_line = f"x-amz-security-token:{_trim(token)}\n"
            signed = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target;x-amzn-query-mode"
        else:
            token_line = ""
            signed = "content-type;host;x-amz-date;x-amz-target;x-amzn-query-mode"
        canonical = (
            f"{self._prefix}{self._host_line}x-amz-date:{amz_date}\n{token_line}"
            f"x-amz-target:{_trim(target)}\nx-amzn-query-mode:true\n\n{signed}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        datestamp = amz_date[:8]
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{datestamp}{self._scope_tail}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, datestamp), string_to_sign.encode(), "sha256"
        ).hexdigest()
        headers = {
            "Host": self._host,
            "Content-Type": JSON_CONTENT_TYPE,
            "X-Amz-Target": target,
            "x-amzn-query-mode": "true",
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{datestamp}{self._scope_tail}, "
                f"SignedHeaders={signed}, Signature={signature}"
            ),
            "User-Agent": USER_AGENT,
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers


class BotocoreSigV4:
    """SigV4 through :class:`botocore.auth.SigV4Auth` itself (the reference; slower per call)."""

    def __init__(self, url: str, region: str, service: str = "sqs") -> None:
        self._url = url
        self._region = region
        self._service = service
        self._host = url_address(url).host_header

    def sign(self, target: str, body: bytes, credentials: FrozenCredentials) -> dict[str, str]:
        """Headers for one POST of ``body`` to ``AmazonSQS.<target>``, signed now by botocore."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={
                "X-Amz-Target": target,
                "Content-Type": JSON_CONTENT_TYPE,
                "x-amzn-query-mode": "true",
            },
        )
        SigV4Auth(credentials, self._service, self._region).add_auth(request)
        headers = {str(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        headers["Host"] = self._host
        headers["User-Agent"] = USER_AGENT
        return headers
