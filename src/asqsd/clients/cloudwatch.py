"""CloudWatch ``PutMetricData`` without aiobotocore, for the Health metric and ``cloudwatch_metrics``.

On Elastic Beanstalk ``default.yaml`` sets ``environment_name``, so the ``Health`` metric is on in
every worker environment. An aiobotocore client for its one call per minute brought aiohttp,
aiobotocore and a second credential chain into every start: about 0.4 s of CPU and 30 MiB before
the first ReceiveMessage (benchmarks/RESULTS.md). :class:`LeanCloudWatch` makes the call the way
the lean SQS client makes SQS calls: CloudWatch's JSON protocol (one of the three botocore's model
lists for it; ``X-Amz-Target: GraniteServiceVersion20100801.PutMetricData``, query-compatible like
SQS), the same SigV4 signer (service ``monitoring``), the same keep-alive transport, proxy and CA
bundle rules, and the SQS client's own credential source. The endpoint is botocore's: a configured
one (``AWS_ENDPOINT_URL_CLOUDWATCH``, ``AWS_ENDPOINT_URL``, the profile) or CloudWatch's endpoint
rules for the region.

Used with the lean SQS client (the default); ``sqs_client: botocore`` keeps aiobotocore's client.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime as dt
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from asqsd.backoff import Backoff
from asqsd.clients.sqs.endpoint import configured_endpoint, regional_endpoint
from asqsd.clients.sqs.lean_impl import error_code_and_message
from asqsd.clients.sqs.network import endpoint_proxy_url, lean_proxy, session_tls_context
from asqsd.clients.sqs.sigv4 import CachedKeySigV4
from asqsd.clients.sqs.transport import LeanHTTPTransport, TransportError, request_url

TARGET = "GraniteServiceVersion20100801.PutMetricData"
_SERVICE = "monitoring"  # SigV4's name for CloudWatch
_CONNECTIONS = 2  # one call per interval (two when the Health metric and cloudwatch_metrics fall together)
_TIMEOUT_S = 10.0
_ATTEMPTS = 2


class CloudWatchError(Exception):
    """A PutMetricData call failed: CloudWatch's error (``code``, ``status``), or no answer (no status)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"PutMetricData: {code}" + (f" (HTTP {status})" if status else "") + f": {message}")
        self.code = code
        self.status = status

    @property
    def retryable(self) -> bool:
        """No answer, a server error or throttling: worth the second attempt (credentials are not)."""
        if self.code == "NoCredentialsError":
            return False
        return self.status is None or self.status >= 500 or self.status == 429 or "Throttl" in self.code


class LeanCloudWatch:
    """``put_metric_data(Namespace=..., MetricData=[...])`` as aiobotocore's client takes it.

    ``credentials`` returns the credential source (anything with an awaitable
    ``get_frozen_credentials``), as the lean SQS client's does; :meth:`aclose` closes the connections.
    """

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Callable[[], Awaitable[Any]],
        *,
        ssl_context: Any = None,
        proxy: Any = None,
    ) -> None:
        url = request_url(endpoint_url)
        self.endpoint_url = url
        self._transport = LeanHTTPTransport(
            url, connections=_CONNECTIONS, ssl_context=ssl_context, proxy=proxy
        )
        self._signer = CachedKeySigV4(url, region, service=_SERVICE)
        self._credentials = credentials
        self._source: Any = None

    async def put_metric_data(self, *, Namespace: str, MetricData: Sequence[Mapping[str, Any]]) -> None:
        """One PutMetricData; :class:`CloudWatchError` if CloudWatch refuses it or does not answer.

        At most two attempts, as the aiobotocore client was configured: a transport failure, a 5xx
        or a throttling answer is tried once more after up to a second (botocore's standard mode).
        """
        body = encode_put_metric_data(Namespace, MetricData)
        backoff = Backoff(base_s=1.0, cap_s=1.0)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._attempt(body)
            except CloudWatchError as exc:
                if attempt == _ATTEMPTS or not exc.retryable:
                    raise
            await asyncio.sleep(backoff.next_delay())

    async def _attempt(self, body: bytes) -> None:
        # Looked up until found, then kept: the source itself refreshes its keys when due.
        source = self._source = self._source or await self._credentials()
        if source is None:
            raise CloudWatchError("NoCredentialsError", "Unable to locate credentials")
        headers = self._signer.sign(TARGET, body, await source.get_frozen_credentials())
        try:
            status, raw, query_error = await self._transport.post(
                self._transport.serialize(headers, body), _TIMEOUT_S
            )
        except TransportError as exc:
            raise CloudWatchError(exc.name, str(exc)) from exc
        if status >= 300:
            code, message = error_code_and_message(status, raw, query_error)
            raise CloudWatchError(code, message, status)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._transport.aclose()


def encode_put_metric_data(namespace: str, metric_data: Sequence[Mapping[str, Any]]) -> bytes:
    """The JSON body botocore's JSON serializer makes for these parameters (timestamps as epoch seconds)."""
    return orjson.dumps({"Namespace": namespace, "MetricData": [_datum(datum) for datum in metric_data]})


def _datum(datum: Mapping[str, Any]) -> dict[str, Any]:
    encoded = dict(datum)
    timestamp = encoded.get("Timestamp")
    if isinstance(timestamp, dt.datetime):
        encoded["Timestamp"] = epoch_seconds(timestamp)
    return encoded


def epoch_seconds(value: dt.datetime) -> int | float:
    """botocore's ``unixtimestamp`` form: whole seconds, or the microseconds added exactly once."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # botocore reads a naive time as UTC
    seconds = calendar.timegm(value.utctimetuple())
    return (seconds * 10**6 + value.microsecond) / 10**6 if value.microsecond else seconds


async def open_lean_cloudwatch(
    chain: Any, region: str, stack: contextlib.AsyncExitStack, env: Mapping[str, str] | None = None
) -> LeanCloudWatch:
    """A :class:`LeanCloudWatch` for ``region`` with the lean SQS client's credential chain ``chain``
    (a :class:`~asqsd.clients.sqs.credential_chain.BotocoreChain`), closed with ``stack``."""
    env = os.environ if env is None else env
    session = getattr(chain, "botocore", chain)
    configured = configured_endpoint(session, env, "cloudwatch")
    if configured is not None:
        endpoint = configured.value
    else:
        endpoint = regional_endpoint(session, region, "cloudwatch")
    proxy_url = endpoint_proxy_url(endpoint, None)
    client = LeanCloudWatch(
        endpoint,
        region,
        chain.get_credentials,
        ssl_context=session_tls_context(chain, endpoint),
        proxy=None if proxy_url is None else lean_proxy(proxy_url),
    )
    stack.push_async_callback(client.aclose)
    return client
