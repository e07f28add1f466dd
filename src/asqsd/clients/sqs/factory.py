"""Open the configured SQS client (``sqs_client``: lean by default, or botocore) for one queue.

The region and endpoint come from :func:`~asqsd.clients.sqs.endpoint.sqs_target` (the queue URL,
the settings and the AWS configuration, as ``asqsd config`` shows them). Both clients share one
aiobotocore client for credentials and the rest of botocore's resolution, so profiles and
instance roles behave exactly as for any AWS SDK.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.endpoint import sqs_target
from asqsd.clients.sqs.lean_impl import create_lean_sqs
from asqsd.clients.sqs.network import endpoint_proxy_url, proxy_address, session_tls_context
from asqsd.config import Settings
from asqsd.logs import get_logger

log = get_logger("daemon")

# Slack on top of the long-poll wait before a receive call times out on the client side.
POLL_SLACK_S = 10.0


async def open_sqs(
    session: Any, settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[SQSClient, str]:
    """The configured SQS client (closed with ``stack``) and the region it resolved."""
    from aiobotocore.config import AioConfig

    assert settings.queue_url is not None
    queue_url = settings.queue_url
    target = sqs_target(settings, session, os.environ)
    config = AioConfig(
        # botocore's own retries would hide errors from our backoff; we retry ourselves.
        retries={"max_attempts": 1, "mode": "standard"},
        read_timeout=settings.wait_time_s + POLL_SLACK_S,
        connect_timeout=10,
        max_pool_connections=settings.receiver_count + 20,
        parameter_validation=False,
        tcp_keepalive=True,
    )
    if target.region_defaulted:
        log.info("region-defaulted", region=target.region, detail="no region configured or in the queue URL")
    if target.region_conflict is not None:
        log.warning("region-conflict", detail=target.region_conflict)
    # Before the botocore client, which fails on a blank one with a bare InvalidConfigError and on
    # a missing one only at the first call: a CA bundle neither client can use stops start-up here.
    ssl_context = session_tls_context(session)
    client = await stack.enter_async_context(
        session.create_client(
            "sqs", region_name=target.region, endpoint_url=target.endpoint_url, config=config
        )
    )
    resolved: str = client.meta.region_name
    log.info(
        "sqs-client",
        endpoint=client.meta.endpoint_url,
        region=resolved,
        client=settings.sqs_client,
        endpoint_source=target.endpoint_source,
        region_source=target.region_source,
    )
    proxy_url = endpoint_proxy_url(client.meta.endpoint_url, client.meta.config.proxies)
    if proxy_url is not None:  # both clients use it (docs/deployment.md); its address only, never credentials
        log.info("sqs-proxy", proxy=proxy_address(proxy_url), endpoint=client.meta.endpoint_url)
    if settings.sqs_client == "botocore":
        from asqsd.clients.sqs.botocore_impl import BotocoreSQS

        return BotocoreSQS(client, queue_url), resolved
    # Lean client: the botocore client's credentials, region and endpoint at a fraction of
    # its CPU per call (docs/sqs-client.md). Its own keep-alive pool covers every long poll
    # plus the batch calls.
    sqs = await create_lean_sqs(
        session,
        client,
        None,
        queue_url,
        receive_slack_s=POLL_SLACK_S,
        connections=settings.receiver_count + 20,
        ssl_context=ssl_context,
    )
    stack.push_async_callback(sqs.aclose)
    return sqs, resolved
