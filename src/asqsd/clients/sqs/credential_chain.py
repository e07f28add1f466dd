"""botocore's credential chain for an asyncio daemon, without aiobotocore: the lean SQS client's source.

The default daemon (``sqs_client: lean``, no AWS feature but SQS) needs from the AWS SDK only the
credential chain and the configuration it reads (region, endpoint, CA bundle, IMDS). aiobotocore
would bring aiohttp and ~25 MiB with it; a plain botocore session has the same chain (environment,
shared files and profile, web identity, SSO, process, container, instance profile) and the same
exceptions. Its lookups and refreshes make blocking HTTP calls (IMDS, STS, the container endpoint),
so :class:`BotocoreChain` runs them in a worker thread (``asyncio.to_thread``); credentials still
fresh are read on the event loop, as cheaply as before. When the chain would certainly end at the
instance profile (an Elastic Beanstalk or EC2 instance with no other source configured),
:mod:`~asqsd.clients.sqs.instance_profile` asks the IMDS instead, and no chain is built.

:class:`LazyAioSession` stands in for the aiobotocore session the optional AWS features (CloudWatch,
DynamoDB, S3) use: it is created, with aiobotocore, only when one of them makes a client.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from asqsd.clients.sqs.aws_config import EnvCredentials
from asqsd.clients.sqs.instance_profile import (
    InstanceProfileCredentials,
    instance_profile_settings,
    load_instance_profile,
)

if TYPE_CHECKING:  # botocore.credentials is imported only when a source other than the environment is used
    from botocore.credentials import Credentials, ReadOnlyCredentials


class ThreadedCredentials:
    """One botocore credentials object, frozen per call; a due refresh runs in a worker thread.

    The interface of aiobotocore's credentials that :class:`~asqsd.clients.sqs.lean_impl.LeanSQS`
    and :func:`~asqsd.clients.sqs.credentials.wait_for_credentials` use: ``method`` and an awaitable
    ``get_frozen_credentials``.
    """

    def __init__(self, credentials: Credentials) -> None:
        from botocore.credentials import RefreshableCredentials

        self._credentials = credentials
        self._refreshable = isinstance(credentials, RefreshableCredentials)
        self.method: str = str(credentials.method)

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        """The current keys; refreshed first (off the event loop) when botocore would refresh them."""
        credentials = self._credentials
        if self._refreshable and credentials.refresh_needed():
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        # Static, or refreshable and not due: botocore returns the keys it holds without a call.
        return credentials.get_frozen_credentials()


class BotocoreChain:
    """A botocore session's credential chain, looked up off the event loop.

    ``botocore`` is the session itself: the endpoint, region, CA bundle and IMDS settings are read
    from it, exactly as a client of that session would read them.
    """

    def __init__(self, botocore_session: Any) -> None:
        self.botocore = botocore_session
        self._instance_profile: InstanceProfileCredentials | None = None

    def get_config_variable(self, name: str) -> Any:
        """The session's configuration variable ``name`` (environment, then the profile)."""
        return self.botocore.get_config_variable(name)

    async def get_credentials(
        self,
    ) -> ThreadedCredentials | EnvCredentials | InstanceProfileCredentials | None:
        """The chain's credentials (None: no source has any); kept once found, as botocore keeps them.

        An :class:`~asqsd.clients.sqs.aws_config.AwsConfigSession` may answer with the
        environment's static keys, which need no thread for a refresh; where only the instance
        profile can answer, its credentials come from
        :func:`~asqsd.clients.sqs.instance_profile.load_instance_profile` (in a thread).
        """
        if self._instance_profile is not None:
            return self._instance_profile
        settings = instance_profile_settings(self.botocore, os.environ)
        if settings is not None:
            self._instance_profile = await asyncio.to_thread(load_instance_profile, settings)
            return self._instance_profile
        credentials = await asyncio.to_thread(self.botocore.get_credentials)
        if credentials is None or isinstance(credentials, EnvCredentials):
            return credentials
        return ThreadedCredentials(credentials)


class LazyAioSession:
    """An aiobotocore session, created (and aiobotocore imported) at the first attribute read.

    Passed where an optional feature expects the daemon's AWS session, so a daemon whose features
    make no AWS client never imports aiobotocore. It resolves credentials through its own chain
    (the same sources, in the same order, as the SQS client's).
    """

    def __init__(self) -> None:
        self._session: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._session is None:
            from aiobotocore.session import get_session

            self._session = get_session()
        return getattr(self._session, name)
