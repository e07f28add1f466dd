"""Open the configured SQS client (``sqs_client``: lean by default, or botocore) for one queue.

The region and endpoint come from :func:`~asqsd.clients.sqs.endpoint.sqs_target` (the queue URL,
the settings and the AWS configuration, as ``asqsd config`` shows them). The lean client takes its
credentials from a plain botocore session's chain
(:class:`~asqsd.clients.sqs.credential_chain.BotocoreChain`) and, with no endpoint configured,
botocore's regional endpoint (:func:`~asqsd.clients.sqs.endpoint.regional_endpoint`): neither
aiobotocore nor aiohttp is imported. The botocore client is an aiobotocore client of the daemon's
aiobotocore session. Either way profiles and instance roles behave exactly as for any AWS SDK.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from asqsd.addresses import plain_host
from asqsd.clients.sqs.base import SQSClient
from asqsd.clients.sqs.endpoint import SQSTarget, regional_endpoint, sqs_target
from asqsd.clients.sqs.lean_impl import open_lean_sqs
from asqsd.clients.sqs.network import endpoint_proxy_url, proxy_address, session_tls_context
from asqsd.config import Settings
from asqsd.logs import get_logger

log = get_logger("daemon")

# Slack on top of the long-poll wait before a receive call times out on the client side.
POLL_SLACK_S = 10.0


async def open_sqs(
    session: Any, settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[SQSClient, str]:
    """The configured SQS client (closed with ``stack``) and the region it resolved.

    ``session``: an aiobotocore session for ``sqs_client: botocore``; for the lean client a
    :class:`~asqsd.clients.sqs.credential_chain.BotocoreChain` (or an aiobotocore session).
    """
    if settings.sqs_client == "botocore":
        return await _open_botocore(session, settings, stack)
    return await _open_lean(session, settings, stack)


def _target(session: Any, settings: Settings) -> SQSTarget:
    target = sqs_target(settings, session, os.environ)
    if target.region_defaulted:
        log.info("region-defaulted", region=target.region, detail="no region configured or in the queue URL")
    if target.region_conflict is not None:
        log.warning("region-conflict", detail=target.region_conflict)
    return target


def _log_client(settings: Settings, target: SQSTarget, endpoint: str, proxies: Any) -> None:
    log.info(
        "sqs-client",
        endpoint=endpoint,
        region=target.region,
        client=settings.sqs_client,
        endpoint_source=target.endpoint_source,
        region_source=target.region_source,
    )
    proxy_url = endpoint_proxy_url(endpoint, proxies)
    if proxy_url is not None:  # both clients use it (docs/deployment.md); its address only, never credentials
        log.info("sqs-proxy", proxy=proxy_address(proxy_url), endpoint=endpoint)


async def _open_lean(
    session: Any, settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[SQSClient, str]:
    """The lean client: the endpoint and region a botocore client would use, without building one."""
    assert settings.queue_url is not None
    botocore_session = getattr(session, "botocore", session)
    target = _target(botocore_session, settings)
    endpoint = target.endpoint_url or regional_endpoint(botocore_session, target.region)
    _check_endpoint(endpoint)
    # A CA bundle the client cannot use stops start-up here, as it did before the botocore client.
    ssl_context = session_tls_context(session, endpoint)
    _log_client(settings, target, endpoint, None)
    # Its own keep-alive pool covers every long poll plus the batch calls (docs/sqs-client.md).
    sqs = await open_lean_sqs(
        session,
        None,
        settings.queue_url,
        endpoint_url=endpoint,
        region=target.region,
        receive_slack_s=POLL_SLACK_S,
        connections=settings.receiver_count + 20,
        ssl_context=ssl_context,
    )
    stack.push_async_callback(sqs.aclose)
    return sqs, target.region


def _check_endpoint(endpoint: str) -> None:
    """botocore's check of an endpoint URL, with its message (a botocore client raised it before)."""
    if plain_host(endpoint):
        return
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

    if not (is_valid_endpoint_url(endpoint) or is_valid_ipv6_endpoint_url(endpoint)):
        raise ValueError(f"Invalid endpoint: {endpoint}")


async def _open_botocore(
    session: Any, settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[SQSClient, str]:
    """The botocore client, an aiobotocore client of ``session`` (an aiobotocore session)."""
    from aiobotocore.config import AioConfig

    from asqsd.clients.sqs.botocore_impl import BotocoreSQS

    assert settings.queue_url is not None
    target = _target(session, settings)
    config = AioConfig(
        # botocore's own retries would hide errors from our backoff; we retry ourselves.
        retries={"max_attempts": 1, "mode": "standard"},
        read_timeout=settings.wait_time_s + POLL_SLACK_S,
        connect_timeout=10,
        max_pool_connections=settings.receiver_count + 20,
        parameter_validation=False,
        tcp_keepalive=True,
    )
    # Before the botocore client, which fails on a blank one with a bare InvalidConfigError and on
    # a missing one only at the first call: a CA bundle it cannot use stops start-up here.
    session_tls_context(session)
    client = await stack.enter_async_context(
        session.create_client(
            "sqs", region_name=target.region, endpoint_url=target.endpoint_url, config=config
        )
    )
    _log_client(settings, target, client.meta.endpoint_url, client.meta.config.proxies)
    return BotocoreSQS(client, settings.queue_url), str(client.meta.region_name)
