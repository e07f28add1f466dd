"""S3 objects for payload offloading: read one as a bounded stream, delete one.

Two calls only, GetObject and DeleteObject, through an aiobotocore S3 client built from the
daemon's session: the same credential chain, SigV4 signing, region and error parsing as every
other AWS call, for both ``sqs_client`` variants (one implementation; an object this large costs
far more to move than to sign). The endpoint follows ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` / the profile like the SQS one; an endpoint that is not AWS's is addressed
path-style (``/<bucket>/<key>``), AWS itself virtual-hosted in the client's region.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asqsd.clients.sqs.endpoint import is_aws_host, s3_endpoint
from asqsd.config import Settings
from asqsd.logs import get_logger

log = get_logger("s3")

# What one delivery holds of an object at a time (plus aiohttp's own read buffer).
CHUNK_BYTES = 64 * 1024


class S3ObjectError(Exception):
    """GetObject or DeleteObject failed: ``status`` is S3's HTTP status (None: no answer)."""

    def __init__(self, status: int | None, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.status = status
        self.code = code


class S3Object:
    """One object being read: its length, then :meth:`chunks` once; :meth:`close` always."""

    def __init__(self, length: int, body: Any) -> None:
        self.length = length
        self._body = body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The object in chunks of at most :data:`CHUNK_BYTES`; S3ObjectError when the stream
        breaks or ends before ``length`` bytes (a short read is never a complete body)."""
        left = self.length
        while left > 0:
            try:
                chunk: bytes = await self._body.read(min(CHUNK_BYTES, left))
            except Exception as exc:  # noqa: BLE001 - any stream failure is a short read
                raise S3ObjectError(200, "ReadFailed", f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                raise S3ObjectError(200, "ShortRead", f"{self.length - left} of {self.length} bytes")
            left -= len(chunk)
            yield chunk

    def close(self) -> None:
        """Drop the response (its connection is not reused unless it was read to the end)."""
        self._body.close()


class S3Objects:
    """GetObject and DeleteObject on an aiobotocore S3 client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def open(self, bucket: str, key: str) -> S3Object:
        """Start reading ``bucket``/``key``; raises :class:`S3ObjectError`."""
        with _translated():
            response = await self._client.get_object(Bucket=bucket, Key=key)
        return S3Object(int(response["ContentLength"]), response["Body"])

    async def delete(self, bucket: str, key: str) -> None:
        """Delete ``bucket``/``key``; raises :class:`S3ObjectError`."""
        with _translated():
            await self._client.delete_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def _translated() -> Any:
    """botocore's errors as :class:`S3ObjectError` with S3's status and error code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise S3ObjectError(
            status, str(error.get("Code", "Unknown")), str(error.get("Message", ""))
        ) from None
    except BotoCoreError as exc:
        raise S3ObjectError(None, type(exc).__name__, str(exc)) from None
    except OSError as exc:
        raise S3ObjectError(None, type(exc).__name__, str(exc)) from None


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    """Where the S3 client goes: ``url`` (None: AWS's regional endpoint) and its source."""

    url: str | None
    source: str
    path_style: bool


def s3_target(session: Any) -> S3Endpoint:
    """The S3 endpoint by the AWS SDK rules; path-style addressing for one that is not AWS's."""
    found = s3_endpoint(session, os.environ)
    if found is None:
        return S3Endpoint(None, "AWS regional endpoint", False)
    host = urlsplit(found.value).hostname or ""
    return S3Endpoint(found.value, found.source, not is_aws_host(host))


async def open_s3(
    session: Any, settings: Settings, region: str, stack: contextlib.AsyncExitStack
) -> S3Objects:
    """The S3 client for payload offloading (closed with ``stack``), in the daemon's region."""
    from aiobotocore.config import AioConfig

    target = s3_target(session)
    config = AioConfig(
        retries={"max_attempts": 2, "mode": "standard"},  # GetObject is idempotent; one retry
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.inactivity_timeout,
        max_pool_connections=settings.http_connections,  # at most one object per dispatcher
        s3={"addressing_style": "path" if target.path_style else "auto"},
    )
    client = await stack.enter_async_context(
        session.create_client("s3", region_name=region, endpoint_url=target.url, config=config)
    )
    log.info("s3-client", endpoint=client.meta.endpoint_url, region=region, endpoint_source=target.source)
    return S3Objects(client)
