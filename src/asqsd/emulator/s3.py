"""A minimal S3 for payload offloading: path-style PUT, GET, HEAD and DELETE of objects.

Just enough for ``asqsd local`` to resolve the S3 pointers of the AWS extended client libraries:
``PUT /<bucket>`` creates a bucket, ``PUT /<bucket>/<key>`` stores an object (creating its bucket
if needed), ``GET`` and ``HEAD`` read it, ``DELETE`` removes it. Objects live in memory.
Signatures are not checked, and there is no listing, versioning, range, multipart or ACL.
"""

from __future__ import annotations

import hashlib
import uuid
from xml.sax.saxutils import escape

from aiohttp import web

# One object at most this large (S3 allows 5 GiB per PUT; this server keeps objects in memory).
MAX_OBJECT_BYTES = 512 * 1024 * 1024


class S3Objects:
    """Buckets of objects, and the aiohttp handlers serving them."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, bytes]] = {}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """Store an object (creating its bucket); what a PUT does, for harnesses and the demo."""
        self.buckets.setdefault(bucket, {})[key] = data

    def add_routes(self, app: web.Application) -> None:
        """Register the object routes; SQS only uses POST, so none of these clash with it."""
        app.router.add_put("/{bucket}", self._create_bucket)
        app.router.add_put("/{bucket}/{key:.+}", self._put)
        app.router.add_get("/{bucket}/{key:.+}", self._get, allow_head=True)
        app.router.add_delete("/{bucket}/{key:.+}", self._delete)

    async def _create_bucket(self, request: web.Request) -> web.Response:
        self.buckets.setdefault(request.match_info["bucket"], {})
        return web.Response(status=200, headers={"Location": f"/{request.match_info['bucket']}"})

    async def _put(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_OBJECT_BYTES:
            return _error(
                400, "EntityTooLarge", f"this emulator keeps objects up to {MAX_OBJECT_BYTES} bytes"
            )
        data = await request.content.read()
        if "aws-chunked" in request.headers.get("Content-Encoding", ""):
            data = _decode_aws_chunked(data)
        self.put(request.match_info["bucket"], request.match_info["key"], data)
        return web.Response(status=200, headers={"ETag": _etag(data)})

    async def _get(self, request: web.Request) -> web.Response:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        objects = self.buckets.get(bucket)
        if objects is None:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist.", bucket=bucket)
        data = objects.get(key)
        if data is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.", key=key)
        headers = {"ETag": _etag(data), "Content-Type": "application/octet-stream"}
        return web.Response(status=200, body=data, headers=headers)

    async def _delete(self, request: web.Request) -> web.Response:
        # Like S3: deleting a key that does not exist succeeds.
        self.buckets.get(request.match_info["bucket"], {}).pop(request.match_info["key"], None)
        return web.Response(status=204)


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _error(status: int, code: str, message: str, **fields: str) -> web.Response:
    """An S3 error document, which the SDKs parse for the error code."""
    extra = "".join(f"<{name.title()}>{escape(value)}</{name.title()}>" for name, value in fields.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
        f"<RequestId>{uuid.uuid4().hex}</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


def _decode_aws_chunked(data: bytes) -> bytes:
    """The payload of an ``aws-chunked`` body (``<hex size>[;ext]\\r\\n<data>\\r\\n`` ..., then a
    zero-size chunk and optional trailers), as SDKs send a PUT with a trailing checksum."""
    out = bytearray()
    pos = 0
    while True:
        line_end = data.index(b"\r\n", pos)
        size = int(data[pos:line_end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        start = line_end + 2
        out += data[start : start + size]
        pos = start + size + 2
