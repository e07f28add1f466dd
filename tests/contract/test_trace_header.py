"""AWSTraceHeader round trip: sent as a message system attribute, returned when the daemon's
receive asks for its attribute list (``trace_headers`` relies on it), on moto and the emulator."""

from __future__ import annotations

from typing import Any

from asqsd.message import RECEIVE_SYSTEM_ATTRIBUTE_NAMES
from tests.contract.helpers import new_queue, receive

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"


async def test_trace_header_is_returned_with_the_daemon_attribute_list(sqs: Any) -> None:
    """A message sent with AWSTraceHeader returns it; one sent without returns no such attribute."""
    url = await new_queue(sqs)
    await sqs.send_message(
        QueueUrl=url,
        MessageBody="traced",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
    )
    await sqs.send_message(QueueUrl=url, MessageBody="plain")
    messages = await receive(
        sqs,
        url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=list(RECEIVE_SYSTEM_ATTRIBUTE_NAMES),
    )
    if len(messages) < 2:  # moto may hand out one message per receive
        messages += await receive(
            sqs, url, WaitTimeSeconds=1, MessageSystemAttributeNames=list(RECEIVE_SYSTEM_ATTRIBUTE_NAMES)
        )
    by_body = {message["Body"]: message["Attributes"] for message in messages}
    assert by_body["traced"]["AWSTraceHeader"] == XRAY
    assert "AWSTraceHeader" not in by_body["plain"]
