"""IAM on a moto_server that enforces it: an admin, users with chosen policies, their keys.

moto_server started with ``INITIAL_NO_AUTH_ACTION_COUNT=n`` answers its first n requests without
checking them; from then on every request must carry a valid SigV4 signature of a known access
key, and its action must be allowed by that user's policies (explicit Deny wins, no Allow means
AccessDenied). The three free requests create an admin user, its allow-all policy and its key;
everything else is done as the admin or as a test user.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiobotocore.session
import botocore.session

from tests.support.servers import run_moto_server

REGION = "us-east-1"

# CreateUser, PutUserPolicy and CreateAccessKey of the admin.
_FREE_REQUESTS = 3

# The queue statement of the managed AWSElasticBeanstalkWorkerTier policy: each *Batch call is
# authorised by its singular action.
STOCK_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:SendMessage",
)


# moto authorises a *Batch call by an action of its own name (sqs:DeleteMessageBatch), where AWS
# uses the singular action: the IAM reference has no *Batch actions for SQS. On moto each singular
# action must therefore come with its batch name to grant what it grants on AWS.
_MOTO_BATCH_NAMES = {
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
    "sqs:SendMessage": "sqs:SendMessageBatch",
}


def as_moto_checks(actions: Sequence[str]) -> list[str]:
    """``actions`` plus the batch names moto checks in their place (see above)."""
    return [*actions, *(_MOTO_BATCH_NAMES[a] for a in actions if a in _MOTO_BATCH_NAMES)]


@dataclass(frozen=True, slots=True)
class AccessKey:
    """One IAM user's access key."""

    user: str
    access_key_id: str
    secret_access_key: str


def allow(actions: Sequence[str], resource: str = "*") -> dict[str, Any]:
    """One Allow statement."""
    return {"Effect": "Allow", "Action": list(actions), "Resource": resource}


# The stock queue statement in the form moto checks it (the batch calls by their own names).
STOCK_QUEUE = allow(as_moto_checks(STOCK_QUEUE_ACTIONS))


def policy_document(statements: Sequence[dict[str, Any]]) -> str:
    """An IAM policy document holding ``statements``."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@dataclass(frozen=True, slots=True)
class IamMoto:
    """A moto_server that enforces IAM, and the admin's key."""

    url: str
    admin: AccessKey

    @contextlib.asynccontextmanager
    async def client(self, service: str, key: AccessKey | None = None) -> AsyncIterator[Any]:
        """An aiobotocore client signing as ``key`` (the admin by default)."""
        key = key or self.admin
        session = aiobotocore.session.get_session()
        async with session.create_client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
        ) as client:
            yield client

    async def create_user(self, statements: Sequence[dict[str, Any]]) -> AccessKey:
        """A new user whose only permissions are ``statements`` (an inline policy), and its key."""
        name = f"user-{uuid.uuid4().hex[:10]}"
        async with self.client("iam") as iam:
            await iam.create_user(UserName=name)
            await iam.put_user_policy(
                UserName=name, PolicyName="only", PolicyDocument=policy_document(statements)
            )
            key = (await iam.create_access_key(UserName=name))["AccessKey"]
        return AccessKey(name, key["AccessKeyId"], key["SecretAccessKey"])


def _create_admin(url: str) -> AccessKey:
    # These three requests are the free ones: moto neither checks their signature nor the policy.
    client = botocore.session.get_session().create_client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    try:
        client.create_user(UserName="admin")
        client.put_user_policy(
            UserName="admin", PolicyName="all", PolicyDocument=policy_document([allow(["*"])])
        )
        key = client.create_access_key(UserName="admin")["AccessKey"]
    finally:
        client.close()
    return AccessKey("admin", key["AccessKeyId"], key["SecretAccessKey"])


@contextlib.contextmanager
def run_iam_moto_server(log_path: Path) -> Iterator[IamMoto]:
    """A moto_server subprocess enforcing IAM from its fourth request on, with an admin user."""
    with run_moto_server(log_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": str(_FREE_REQUESTS)}) as url:
        yield IamMoto(url, _create_admin(url))
