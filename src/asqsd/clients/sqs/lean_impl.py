"""The lean SQS client (the default, ``sqs_client: lean``): signed JSON-protocol POSTs, botocore parity.

Stock aiobotocore spends ~540 µs of CPU per SQS call (signing, User-Agent assembly, parameter
validation, model-driven parsing, event hooks); see ``docs/sqs-client.md`` for the measurements.
:class:`LeanSQS` keeps everything that has to behave exactly like botocore *from* botocore and does
only the mechanical part itself:

* **credentials** come from botocore's credential chain (an aiobotocore session), and are frozen per
  call through ``get_frozen_credentials()``, so refreshable credentials (instance profile, AssumeRole,
  SSO, container) rotate exactly as they do for a botocore client;
* **endpoint and region** are read from an aiobotocore client's ``meta`` once, so
  ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL`` / ``endpoint_url=`` / FIPS / region resolution follow
  botocore's rules;
* **signing** is SigV4, either through :class:`botocore.auth.SigV4Auth` itself or through
  :class:`CachedKeySigV4`, which builds the same canonical request but derives the signing key only
  once per day and secret key. The test suite checks that both produce byte-identical Authorization
  headers to botocore's for the same request and timestamp;
* responses and errors go through the helpers in :mod:`asqsd.clients.sqs.wire`, so the rest of the
  daemon sees the same :class:`~asqsd.message.Message`, :class:`~asqsd.message.BatchResult` and
  :class:`~asqsd.errors.SQSError` values as with :class:`~asqsd.clients.sqs.botocore_impl.BotocoreSQS`;
* JSON is encoded and decoded by orjson (:func:`encode_body`, :func:`decode_body`): compact UTF-8,
  where botocore writes ``\\u`` escapes for non-ASCII text (both are the same JSON to SQS), and the
  signature is computed over exactly the bytes sent.

Two transports carry the signed POSTs (``transport=``):

* ``"lean"`` (:class:`LeanHTTPTransport`, the default of :func:`create_lean_sqs`): the asyncio-Protocol
  HTTP/1.1 keep-alive pool of :mod:`asqsd.clients.http1` (the worker client's), keeping response bodies. One
  ``transport.write`` per request, a bounded pool of keep-alive connections, a total deadline per
  call, TLS verified with ``ssl.create_default_context()`` for https endpoints. The proxy and CA
  bundle a botocore client would use (:mod:`asqsd.clients.sqs.network`: ``HTTPS_PROXY`` /
  ``HTTP_PROXY`` / ``NO_PROXY``, ``AWS_CA_BUNDLE``) are applied by :func:`create_lean_sqs`. LeanSQS
  owns it: call :meth:`LeanSQS.aclose` at shutdown.
* ``"aiohttp"``: the caller's aiohttp session (owned and closed by the caller, with its own proxy
  and TLS settings).

What it does not do (by design; the daemon retries on ``SQSError.retryable``): SDK-side retries,
clock-skew correction, TLS (``https://``) proxies and botocore's ``proxies_config``, client
certificates, and anonymous (unsigned) requests.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson
from botocore import UNSIGNED
from botocore.exceptions import BotoCoreError

from asqsd.clients.http1.proxy import HTTPProxy
from asqsd.clients.sqs.base import DeleteEntry, VisibilityEntry
from asqsd.clients.sqs.network import endpoint_proxy_url, lean_proxy, session_tls_context
from asqsd.clients.sqs.sigv4 import (
    BotocoreSigV4,
    CachedKeySigV4,
    FrozenCredentials,
    RequestSigner,
)
from asqsd.clients.sqs.transport import MAX_RESPONSE_BYTES, LeanHTTPTransport, TransportError, request_url
from asqsd.clients.sqs.wire import (
    attributes_to_wire,
    batch_result,
    decode_binary_attributes,
    parse_message,
    send_message_params,
    server_error,
)
from asqsd.errors import SQSError
from asqsd.message import RECEIVE_SYSTEM_ATTRIBUTE_NAMES, BatchResult, Message, MessageAttribute

if TYPE_CHECKING:  # the aiohttp transport only: the default (lean) one never imports aiohttp
    import aiohttp

__all__ = [
    "BotocoreSigV4",
    "CachedKeySigV4",
    "FrozenCredentials",
    "LeanHTTPTransport",
    "LeanSQS",
    "RequestSigner",
    "create_lean_sqs",
    "open_lean_sqs",
]


_TARGET_PREFIX = "AmazonSQS."


# The attribute selection BotocoreSQS.receive asks for, pre-serialised: it never changes.
_RECEIVE_TAIL = (
    b',"MessageSystemAttributeNames":'
    + orjson.dumps(list(RECEIVE_SYSTEM_ATTRIBUTE_NAMES))
    + b',"MessageAttributeNames":["All"]}'
)


class _CredentialSource(Protocol):
    """aiobotocore's ``AioCredentials`` / ``AioRefreshableCredentials``."""

    async def get_frozen_credentials(self) -> FrozenCredentials: ...


def _attributes_to_json(attributes: Mapping[str, MessageAttribute]) -> dict[str, dict[str, Any]]:
    wire = attributes_to_wire(attributes)
    for entry in wire.values():
        binary = entry.get("BinaryValue")
        if isinstance(binary, bytes | bytearray):
            entry["BinaryValue"] = base64.b64encode(binary).decode("ascii")
    return wire


def encode_body(operation: str, payload: Mapping[str, Any]) -> bytes:
    """A request body: compact JSON in UTF-8, the bytes that are signed and sent.

    Text SQS cannot hold (a lone surrogate) cannot be encoded either: that is the
    non-retryable error SQS would have answered with, raised without a call.
    """
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:
        raise SQSError(
            operation, "InvalidParameterValue", f"request not encodable as JSON: {exc}", retryable=False
        ) from exc


def decode_body(operation: str, status: int, raw: bytes) -> dict[str, Any]:
    """A successful response's JSON object (``{}`` for an empty body), or a retryable :class:`SQSError`."""
    if not raw:
        return {}
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SQSError(operation, "InvalidResponse", f"HTTP {status}: {exc}", retryable=True) from exc
    if not isinstance(decoded, dict):
        raise SQSError(operation, "InvalidResponse", f"HTTP {status}: not an object", retryable=True)
    return decoded


class LeanSQS:
    """An :class:`~asqsd.clients.sqs.base.SQSClient` POSTing SQS JSON requests (lean or aiohttp transport).

    Safe to share between any number of concurrent tasks on one event loop. With
    ``transport="aiohttp"`` it owns nothing: the aiohttp session and the credential source are
    created and closed by the caller and must outlive it. With ``transport="lean"`` it owns a
    :class:`LeanHTTPTransport` (``http`` is then unused and may be None): call :meth:`aclose` when
    done. No SDK-level retries: every failure becomes an :class:`SQSError` whose ``retryable`` flag
    tells the caller whether to try again.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession | None,
        queue_url: str,
        *,
        endpoint_url: str,
        region: str,
        credentials: Callable[[], Awaitable[_CredentialSource | None]],
        signer: Literal["cached", "botocore"] = "cached",
        request_timeout_s: float = 10.0,
        receive_slack_s: float = 10.0,
        transport: Literal["lean", "aiohttp"] = "aiohttp",
        connections: int = 32,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        proxy: HTTPProxy | None = None,
    ) -> None:
        """``credentials`` is called until it returns a source (e.g. ``AioSession.get_credentials``).

        ``request_timeout_s`` bounds every call but ReceiveMessage, which gets its
        ``WaitTimeSeconds`` plus ``receive_slack_s`` (total deadlines per call). ``connections``,
        ``max_response_bytes``, ``ssl_context`` and ``proxy`` configure the lean transport only
        (with aiohttp, the session's connector limits the connections).
        """
        self.queue_url = queue_url
        if transport == "aiohttp" and http is None:
            raise ValueError("transport='aiohttp' needs an aiohttp session")
        self._http = http
        url = request_url(endpoint_url)
        self._lean: LeanHTTPTransport | None = None
        if transport == "lean":
            self._lean = LeanHTTPTransport(
                url,
                connections=connections,
                max_body_bytes=max_response_bytes,
                ssl_context=ssl_context,
                proxy=proxy,
            )
        elif transport != "aiohttp":
            raise ValueError(f"unknown transport {transport!r}")
        self._url: Any = url
        if transport == "aiohttp":
            from yarl import URL

            # A pre-parsed, already-encoded URL spares aiohttp a parse per request.
            self._url = URL(url, encoded=True)
        self._signer: RequestSigner = (
            CachedKeySigV4(url, region) if signer == "cached" else BotocoreSigV4(url, region)
        )
        self._load_credentials = credentials
        self._credentials: _CredentialSource | None = None
        self._timeout = float(request_timeout_s)
        self._receive_slack_s = receive_slack_s
        self._aiohttp_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        try:
            self._queue_url_json = orjson.dumps(queue_url)
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"queue URL {queue_url!r} is not valid Unicode text: {exc}") from None

    @property
    def transport(self) -> Literal["lean", "aiohttp"]:
        """Which transport carries the requests."""
        return "aiohttp" if self._lean is None else "lean"

    @property
    def lean_transport(self) -> LeanHTTPTransport | None:
        """The owned lean transport (None with ``transport="aiohttp"``)."""
        return self._lean

    async def aclose(self) -> None:
        """Close the owned lean transport's connections (a no-op for the aiohttp transport)."""
        if self._lean is not None:
            await self._lean.aclose()

    async def __aenter__(self) -> LeanSQS:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    @property
    def url(self) -> str:
        """Where every request is POSTed: botocore's endpoint URL joined to the ``/`` request URI."""
        return str(self._url)

    async def receive(
        self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int
    ) -> list[Message]:
        """ReceiveMessage: long poll, stock system attributes, all message attributes."""
        body = self.receive_body(
            max_messages=max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )
        response = await self._call("ReceiveMessage", body, wait_time_s + self._receive_slack_s)
        messages: list[Message] = []
        for raw in response.get("Messages") or ():
            try:
                decode_binary_attributes(raw)
            except (binascii.Error, ValueError) as exc:
                raise SQSError("ReceiveMessage", "InvalidResponse", str(exc), retryable=True) from exc
            messages.append(parse_message(raw))
        return messages

    def receive_body(self, *, max_messages: int, wait_time_s: int, visibility_timeout_s: int) -> bytes:
        # Formatted rather than encoded from a dict: the hot path, and only three integers ever change.
        return b'{"QueueUrl":%b,"MaxNumberOfMessages":%d,"WaitTimeSeconds":%d,"VisibilityTimeout":%d%b' % (
            self._queue_url_json,
            max_messages,
            wait_time_s,
            visibility_timeout_s,
            _RECEIVE_TAIL,
        )

    async def delete_batch(self, entries: Sequence[DeleteEntry]) -> BatchResult:
        """DeleteMessageBatch."""
        payload = {
            "QueueUrl": self.queue_url,
            "Entries": [{"Id": e.entry_id, "ReceiptHandle": e.receipt_handle} for e in entries],
        }
        return batch_result(await self._call("DeleteMessageBatch", payload, self._timeout))

    async def change_visibility_batch(self, entries: Sequence[VisibilityEntry]) -> BatchResult:
        """ChangeMessageVisibilityBatch."""
        payload = {
            "QueueUrl": self.queue_url,
            "Entries": [
                {
                    "Id": e.entry_id,
                    "ReceiptHandle": e.receipt_handle,
                    "VisibilityTimeout": e.visibility_timeout_s,
                }
                for e in entries
            ],
        }
        return batch_result(await self._call("ChangeMessageVisibilityBatch", payload, self._timeout))

    async def get_queue_attributes(self, names: Sequence[str]) -> dict[str, str]:
        """GetQueueAttributes."""
        payload = {"QueueUrl": self.queue_url, "AttributeNames": list(names)}
        response = await self._call("GetQueueAttributes", payload, self._timeout)
        return {str(k): str(v) for k, v in (response.get("Attributes") or {}).items()}

    async def send_message(
        self,
        body: str,
        attributes: Mapping[str, MessageAttribute] | None = None,
        *,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        queue_url: str | None = None,
    ) -> str:
        """SendMessage, to this queue or to ``queue_url`` (the dead-letter queue)."""
        payload = send_message_params(
            queue_url or self.queue_url, body, attributes, group_id, deduplication_id, _attributes_to_json
        )
        response = await self._call("SendMessage", payload, self._timeout)
        return str(response.get("MessageId", ""))

    async def call(self, operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Any other operation (``asqsd send``'s SendMessageBatch ...): its decoded response."""
        return await self._call(operation, payload, self._timeout)

    async def resolve_credentials(self) -> bool:
        """Look the credential source up now if it is not known yet; whether one was found."""
        if self._credentials is None:
            # Retried on every call while absent: at boot an instance profile can be briefly
            # unavailable, and a botocore client created in that window would fail forever.
            self._credentials = await self._load_credentials()
        return self._credentials is not None

    async def _frozen_credentials(self, operation: str) -> FrozenCredentials:
        try:
            source = self._credentials
            if source is None and await self.resolve_credentials():
                source = self._credentials
            if source is None:
                raise SQSError(
                    operation, "NoCredentialsError", "Unable to locate credentials", retryable=True
                )
            # Frozen per call: refreshable credentials rotate here (they refresh only when due).
            return await source.get_frozen_credentials()
        except BotoCoreError as exc:
            raise SQSError(operation, type(exc).__name__, str(exc), retryable=True) from exc

    async def _call(
        self, operation: str, request: Mapping[str, Any] | bytes, timeout_s: float
    ) -> dict[str, Any]:
        """POST one operation (its parameters, or its body already encoded); the decoded response."""
        body = request if isinstance(request, bytes) else encode_body(operation, request)
        credentials = await self._frozen_credentials(operation)
        headers = self._signer.sign(_TARGET_PREFIX + operation, body, credentials)
        lean = self._lean
        if lean is not None:
            try:
                status, raw, query_error = await lean.post(lean.serialize(headers, body), timeout_s)
            except TransportError as exc:
                # Transport problems (endpoint down, connection reset, timeout): always retryable.
                raise SQSError(operation, exc.name, str(exc), retryable=True) from exc
        else:
            status, raw, query_error = await self._aiohttp_post(operation, headers, body, timeout_s)
        if status >= 300:
            raise _error_from_response(operation, status, raw, query_error)
        return decode_body(operation, status, raw)

    async def _aiohttp_post(
        self, operation: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, bytes, str | None]:
        import aiohttp  # already loaded: the caller made the session

        assert self._http is not None
        limits = self._aiohttp_timeouts.get(timeout_s)
        if limits is None:
            if len(self._aiohttp_timeouts) >= 64:
                self._aiohttp_timeouts.clear()
            limits = self._aiohttp_timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._http.post(self._url, data=body, headers=headers, timeout=limits) as response:
                raw = await response.read()
                return response.status, raw, response.headers.get("x-amzn-query-error")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # Transport problems (endpoint down, connection reset, timeout): always retryable.
            raise SQSError(operation, type(exc).__name__, str(exc), retryable=True) from exc


def _error_from_response(operation: str, status: int, raw: bytes, query_error: str | None) -> SQSError:
    """Parse an error response the way botocore's JSON parser does (``__type``, query-error header)."""
    code, message = error_code_and_message(status, raw, query_error)
    return server_error(operation, code, message, status)


def error_code_and_message(status: int, raw: bytes, query_error: str | None) -> tuple[str, str]:
    """The error code and message of a JSON-protocol error response, as botocore's parser reads them:
    ``__type`` (or the status), and for a query-compatible service the legacy code of the
    ``x-amzn-query-error`` header."""
    body: Any
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {"message": raw.decode("utf-8", errors="replace")}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message", body.get("Message", "")))
    code = str(body.get("__type", str(status)))
    # "com.amazonaws.sqs#QueueDoesNotExist", or "Code:http://internal..." (x-amzn-errortype style).
    code = code.split(":", 1)[0]
    code = code.rsplit("#", 1)[-1]
    if query_error:
        # Query-compatible services name the legacy code first: "AWS.SimpleQueueService.X;Sender".
        legacy_code, sep, fault = query_error.partition(";")
        if sep and legacy_code and ";" not in fault:
            code = legacy_code
    return code, message


def _connections_of(http: aiohttp.ClientSession | None) -> int:
    limit = http.connector.limit if http is not None and http.connector is not None else 0
    return limit if limit > 0 else 32


async def create_lean_sqs(
    aio_session: Any,
    sqs_client: Any,
    http: aiohttp.ClientSession | None,
    queue_url: str,
    *,
    signer: Literal["cached", "botocore"] = "cached",
    request_timeout_s: float = 10.0,
    receive_slack_s: float = 10.0,
    transport: Literal["lean", "aiohttp"] = "lean",
    connections: int | None = None,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> LeanSQS:
    """A :class:`LeanSQS` that signs and routes like ``sqs_client`` would.

    * ``aio_session`` (``aiobotocore.session.AioSession``): its credential chain supplies the
      credentials; create ``sqs_client`` from the same session without explicit keys so both use the
      same credentials. Must stay alive as long as the LeanSQS (it owns the credential providers).
    * ``sqs_client``: an aiobotocore SQS client, read once for ``meta.endpoint_url`` and
      ``meta.region_name`` (so endpoint env vars, ``endpoint_url=``, FIPS and region resolution are
      botocore's). LeanSQS keeps no reference to it; it may be closed afterwards.
    * ``transport``: ``"lean"`` (default) sends through an owned :class:`LeanHTTPTransport` of at
      most ``connections`` keep-alive connections (give it the concurrent long polls plus batch
      calls, e.g. ``receiver_count + 20``); the caller must ``await lean.aclose()`` at shutdown.
      ``http`` is not used for requests then (may be None); when ``connections`` is None it is
      taken from ``http``'s connector limit if there is one (the daemon sizes that for its polls),
      else 32.
    * ``http``: with ``transport="aiohttp"``, the aiohttp session every request goes through; owned
      and closed by the caller. Give its connector enough connections for the concurrent long polls
      plus batch calls.
    * the lean transport goes through the proxy ``sqs_client`` would use and, unless
      ``ssl_context`` is given, trusts the CA bundle ``aio_session`` names
      (:mod:`asqsd.clients.sqs.network`). A proxy it cannot use, or a CA bundle that cannot be
      loaded, raises :class:`~asqsd.errors.StartupError`.
    """
    config = sqs_client.meta.config
    if config.signature_version is UNSIGNED:
        raise ValueError("LeanSQS signs every request; the client is configured for UNSIGNED requests")
    return await open_lean_sqs(
        aio_session,
        http,
        queue_url,
        endpoint_url=str(sqs_client.meta.endpoint_url),
        region=sqs_client.meta.region_name,
        proxies=config.proxies,
        signer=signer,
        request_timeout_s=request_timeout_s,
        receive_slack_s=receive_slack_s,
        transport=transport,
        connections=connections,
        max_response_bytes=max_response_bytes,
        ssl_context=ssl_context,
    )


async def open_lean_sqs(
    session: Any,
    http: aiohttp.ClientSession | None,
    queue_url: str,
    *,
    endpoint_url: str,
    region: str | None,
    proxies: Mapping[str, str] | None = None,
    signer: Literal["cached", "botocore"] = "cached",
    request_timeout_s: float = 10.0,
    receive_slack_s: float = 10.0,
    transport: Literal["lean", "aiohttp"] = "lean",
    connections: int | None = None,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> LeanSQS:
    """A :class:`LeanSQS` calling ``endpoint_url`` in ``region``, with the credentials ``session`` finds.

    :func:`create_lean_sqs` without a botocore client: ``session`` is an aiobotocore session or a
    :class:`~asqsd.clients.sqs.credential_chain.BotocoreChain` (anything with an awaitable
    ``get_credentials`` and ``get_config_variable``); ``proxies`` stands for a client config's.
    """
    if transport == "aiohttp" and proxies:
        raise ValueError("LeanSQS does not use botocore's proxy settings; configure the aiohttp session")
    if not region:
        # botocore would fail every call with NoRegionError; SigV4 cannot be computed without one.
        raise ValueError("LeanSQS needs a region to sign with; the client has none")
    proxy = None
    if transport == "lean":
        proxy_url = endpoint_proxy_url(endpoint_url, proxies)
        proxy = None if proxy_url is None else lean_proxy(proxy_url)
        if ssl_context is None:
            ssl_context = session_tls_context(session, endpoint_url)
    lean = LeanSQS(
        http,
        queue_url,
        endpoint_url=endpoint_url,
        region=str(region),
        credentials=session.get_credentials,
        signer=signer,
        request_timeout_s=request_timeout_s,
        receive_slack_s=receive_slack_s,
        transport=transport,
        connections=connections or _connections_of(http),
        max_response_bytes=max_response_bytes,
        ssl_context=ssl_context,
        proxy=proxy,
    )
    # Resolve now so the first call does not pay for the chain; a miss is retried per call.
    await lean.resolve_credentials()
    return lean
