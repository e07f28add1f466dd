"""Queue-level operations: create, look up, attributes, list, delete, purge, tags."""

from __future__ import annotations

from typing import Any

from asqsd.emulator.context import Context
from asqsd.emulator.validation import (
    Params,
    integer,
    optional_text,
    queue_name_of,
    string_list,
    string_map,
    text,
)

Result = dict[str, Any]


def create_queue(ctx: Context, params: Params) -> Result:
    name = text(params, "QueueName")
    queue = ctx.store.create_queue(name, string_map(params, "Attributes"))
    queue.tags.update(string_map(params, "tags"))
    return {"QueueUrl": ctx.queue_url(queue.name)}


def get_queue_url(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(text(params, "QueueName"))
    return {"QueueUrl": ctx.queue_url(queue.name)}


def get_queue_attributes(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    found = ctx.store.get_attributes(queue, string_list(params, "AttributeNames"))
    return {"Attributes": found} if found else {}


def set_queue_attributes(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    ctx.store.set_attributes(queue, string_map(params, "Attributes"))
    return {}


def list_queues(ctx: Context, params: Params) -> Result:
    prefix = optional_text(params, "QueueNamePrefix") or ""
    limit = integer(params, "MaxResults", 1, 1000, "MaxResults must be between 1 and 1000.")
    after = optional_text(params, "NextToken")
    names = ctx.store.list_queues(prefix)
    if after is not None:
        names = [name for name in names if name > after]
    result: Result = {}
    if limit is not None and len(names) > limit:
        names = names[:limit]
        result["NextToken"] = names[-1]
    elif limit is None:
        names = names[:1000]
    if names:
        result["QueueUrls"] = [ctx.queue_url(name) for name in names]
    return result


def delete_queue(ctx: Context, params: Params) -> Result:
    ctx.store.delete_queue(ctx.store.get_queue(queue_name_of(params)))
    return {}


def purge_queue(ctx: Context, params: Params) -> Result:
    ctx.store.purge(ctx.store.get_queue(queue_name_of(params)))
    return {}


def tag_queue(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    queue.tags.update(string_map(params, "Tags"))
    return {}


def untag_queue(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    for key in string_list(params, "TagKeys"):
        queue.tags.pop(key, None)
    return {}


def list_queue_tags(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    return {"Tags": dict(queue.tags)} if queue.tags else {}


def list_dead_letter_source_queues(ctx: Context, params: Params) -> Result:
    target = ctx.store.get_queue(queue_name_of(params))
    sources = [
        ctx.queue_url(queue.name)
        for queue in ctx.store.queues.values()
        if queue.config.redrive is not None and queue.config.redrive.target_name == target.name
    ]
    return {"queueUrls": sorted(sources)}
