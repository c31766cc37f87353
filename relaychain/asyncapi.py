"""The AsyncAPI 3.0 document of a deployment: topics, messages, keys, headers, and who reads and writes what.

Built from the same sources the runtime uses (`topology` for inboxes and
emitted types, the event models for payload schemas, the settings' routes for
your own steps), so it cannot drift from what actually runs.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic.json_schema import models_json_schema

from relaychain import topology
from relaychain.bus.codec import CONTENT_TYPE
from relaychain.bus.runtime import EVENT_TYPE_HEADER
from relaychain.schemas.events import (
    PUBLIC_EVENTS,
)
from relaychain.settings import Settings

__all__ = ["asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
RUNTIME_EMITS = ("error", "dead_letter", "cancelled")


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """Every topic as a channel, every event as a message, every agent's reads and writes as operations."""
    carried = _channel_messages(settings)
    channels = {
        _channel_id(topic): {
            "address": topic,
            "title": topic,
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        }
        for topic, names in carried.items()
    }
    operations: dict[str, Any] = {}
    for agent, inboxes in topology.AGENT_INBOXES.items():
        for topic in inboxes:
            operations[f"{agent}.receive.{_channel_id(topic)}"] = _operation(
                "receive",
                agent,
                topic,
                carried[topic],
                f"The {agent} agent consumes {topic} in group {topology.group_of(agent)}.",
            )
        emitted = (*topology.AGENT_EMITS[agent], *RUNTIME_EMITS)
        for topic, names in carried.items():
            sent = [name for name in names if name in emitted]
            if sent and topic != topology.REQUESTS:
                operations[f"{agent}.send.{_channel_id(topic)}"] = _operation(
                    "send", agent, topic, sent, f"The {agent} agent publishes {', '.join(sent)} events to {topic}."
                )
    operations["client.send.requests"] = _operation(
        "send",
        "client",
        topology.REQUESTS,
        ["request"],
        "A publisher (relaychain.Client, the CLI, the gateway) sends requests.",
    )
    operations["client.receive.responses"] = _operation(
        "receive",
        "client",
        topology.RESPONSES,
        carried[topology.RESPONSES],
        "A publisher awaits the answer with its request_id.",
    )
    operations["client.send.control"] = _operation(
        "send",
        "client",
        topology.CONTROL,
        carried[topology.CONTROL],
        "The gateway cancels a request; every agent process reads the whole topic in a group of its own.",
    )
    operations["client.receive.tokens"] = _operation(
        "receive",
        "client",
        topology.TOKENS,
        carried[topology.TOKENS],
        "The gateway streams a request's token deltas (best-effort; the answer stays authoritative).",
    )
    schemas, messages = _components()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "relaychain",
            "version": _version(),
            "description": (
                "Typed events between relaychain's agents. A request travels along its routing slip: each agent "
                "consumes a Job on its inbox, does its step and publishes the Job to the topic of the next step; "
                "the answer (Response, Error or Blocked) goes to the responses topic."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": _kafka_host(settings.bus),
                "protocol": "kafka",
                "description": "The Kafka cluster of the deployment (RELAYCHAIN_BUS).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _channel_messages(settings: Settings) -> dict[str, list[str]]:
    """Topic -> the event types it carries, in a stable order."""
    carried: dict[str, list[str]] = {topology.REQUESTS: ["request"]}
    step_topics = [inboxes[0] for agent, inboxes in topology.AGENT_INBOXES.items() if agent != "router"]
    for topic in [*step_topics, *settings.runtime.routes.values()]:
        carried.setdefault(topic, []).append("job")
    carried[topology.USAGE] = ["usage"]
    carried[topology.RESPONSES] = ["response", "error", "blocked", "cancelled"]
    carried[topology.DEADLETTER] = ["dead_letter"]
    carried[topology.TOKENS] = ["token_delta"]
    carried[topology.CONTROL] = ["cancel"]
    return {topic: list(dict.fromkeys(names)) for topic, names in carried.items()}


def _operation(action: str, agent: str, topic: str, names: list[str], description: str) -> dict[str, Any]:
    channel = _channel_id(topic)
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "title": f"{agent} {action}s on {topic}",
        "description": description,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
        "tags": [{"name": agent}],
    }


def _components() -> tuple[dict[str, Any], dict[str, Any]]:
    events = PUBLIC_EVENTS
    top, definitions = models_json_schema(
        [(event, "validation") for event in events], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    messages: dict[str, Any] = {}
    for event in events:
        name = event.model_fields["type"].default
        messages[name] = {
            "name": name,
            "title": event.__name__,
            "summary": (event.__doc__ or "").strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "payload": top[(event, "validation")],
            "headers": _headers(name),
            "correlationId": {
                "description": "Answers carry the request's request_id.",
                "location": "$message.payload#/request_id",
            },
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": "conversation_id, else request_id: one conversation's turns keep their order.",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
    return schemas, messages


def _headers(event_type: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            EVENT_TYPE_HEADER: {"type": "string", "const": event_type, "description": "The event's `type`."},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "traceparent": {"type": "string", "description": "W3C trace context: the span that published it."},
            "tracestate": {"type": "string"},
        },
        "required": [EVENT_TYPE_HEADER, "content-type"],
    }


def _channel_id(topic: str) -> str:
    return topic.removeprefix(topology.PREFIX).replace(".", "_") or topic


def _kafka_host(bus: str) -> str:
    if bus.startswith("kafka://"):
        return bus.removeprefix("kafka://").split("?", 1)[0].split(",", 1)[0]
    return "localhost:9092"


def _version() -> str:
    try:
        return version("relaychain")
    except PackageNotFoundError:
        return "0.0.0"
