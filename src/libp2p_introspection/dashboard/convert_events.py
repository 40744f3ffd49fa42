"""A node's ``Runtime`` and its ``Event`` messages in the dashboard's JSON.

Shapes (timestamps ms since the Unix epoch)::

    RUNTIME    = {"implementation", "version", "platform", "peerId",
                  "eventTypes": [{"name", "properties": [{"name", "type", "multiple"}]}]}
    EVENT      = {"seq": n (assigned by the store), "ts": ms, "type": name,
                  "content": the event's JSON object (or its text, if it is not JSON,
                             nests too deep, or is over MAX_PARSED_CONTENT characters),
                  "query": QUERY (only for an InboundDHTQuery / OutboundDHTQuery),
                  "says": a sentence (only for a §3.1 event type whose content has its
                          shape: :func:`~libp2p_introspection.protocol.event_text.describe`)}
    QUERY      = {"dir": "INBOUND"|"OUTBOUND", "peers": [peer id, ...],
                  "message": str, "result": str (upper case), "ms": number or null}

Strings are capped (:mod:`.caps`): the runtime's fields at
:data:`~.caps.MAX_TEXT` (its peer id at :data:`~.caps.MAX_PEER_ID`), event type
and property names at :data:`MAX_NAME`, event content at
:data:`MAX_EVENT_CONTENT`; at most :data:`MAX_EVENT_TYPES` event types of
:data:`MAX_PROPERTY_TYPES` property types in all are kept from a runtime.

A DHT query event is read in either shape (:func:`dht_query`): the one of
PROTOCOL.md §3 (``peerIds``, ``messageType``, ``totalTimeMs``, upper-case
``result``; the observer-toolkit's, with ``type`` where it has no
``messageType``), and this project's older one, in recordings made before
(``peerId``, ``queryType``, ``durationMs``, lower-case ``result``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

from libp2p_introspection.dashboard.caps import MAX_PEER_ID, MAX_TEXT, capped
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.event_text import describe

JSON = dict[str, Any]

#: Longest event content parsed as JSON, characters; longer stays text (parsed,
#: ``[{},{},...]`` costs 25 times its text; honest events are well under 1 KiB).
MAX_PARSED_CONTENT = 16 * 1024
#: Longest event type or property name emitted, characters.
MAX_NAME = 256
#: Longest event content emitted, characters.
MAX_EVENT_CONTENT = 64 * 1024
#: Event types and property types kept from a ``Runtime`` (an honest node declares
#: a dozen types of a few properties each); the rest are left out.
MAX_EVENT_TYPES = 1024
MAX_PROPERTY_TYPES = 4096

_PROPERTY_TYPE = {v: k for k, v in pb.EventType.EventProperty.PropertyType.items()}


def runtime_to_json(runtime: pb.Runtime) -> JSON:
    """The node's ``Runtime`` (shape in the module doc), its strings capped; at most
    :data:`MAX_EVENT_TYPES` event types of :data:`MAX_PROPERTY_TYPES` properties in all."""
    event_types = []
    properties = 0
    for event_type in itertools.islice(runtime.event_types, MAX_EVENT_TYPES):
        room = max(MAX_PROPERTY_TYPES - properties, 0)
        converted = event_type_to_json(event_type, max_properties=room)
        properties += len(converted["properties"])
        event_types.append(converted)
    return {
        "implementation": capped(runtime.implementation, MAX_TEXT),
        "version": capped(runtime.version, MAX_TEXT),
        "platform": capped(runtime.platform, MAX_TEXT),
        "peerId": capped(runtime.peer_id, MAX_PEER_ID),
        "eventTypes": event_types,
    }


def event_type_to_json(
    event_type: pb.EventType, *, max_properties: int = MAX_PROPERTY_TYPES
) -> JSON:
    """An ``EventType`` with its property types (names capped at :data:`MAX_NAME`;
    the first ``max_properties`` of them)."""
    props = event_type.property_types[:max_properties]
    return {
        "name": capped(event_type.name, MAX_NAME),
        "properties": [
            {
                "name": capped(p.name, MAX_NAME),
                "type": _PROPERTY_TYPE.get(p.type, str(p.type)),
                "multiple": p.has_multiple,
            }
            for p in props
        ],
    }


#: The DHT query event types (one event per Kademlia RPC).
DHT_QUERY_EVENTS = ("InboundDHTQuery", "OutboundDHTQuery")


def dht_query(type_name: str, content: Any) -> JSON | None:
    """What a DHT query event says, from its content in either shape (module doc).

    ``None`` for another event type or a content that is not a JSON object.
    ``peers`` holds only the non-empty strings of ``peerIds`` (the toolkit's own
    recordings hold ``null`` entries) or the old ``peerId``; a value of the wrong
    kind reads as absent. The direction comes from the type name, as the toolkit
    reads it.
    """
    if type_name not in DHT_QUERY_EVENTS or not isinstance(content, dict):
        return None
    raw = content.get("peerIds")
    if isinstance(raw, list):
        peers = [p for p in raw if isinstance(p, str) and p]
    else:
        old = content.get("peerId")
        peers = [old] if isinstance(old, str) and old else []
    message = ""
    for key in ("messageType", "queryType", "type"):
        value = content.get(key)
        if isinstance(value, str) and value:
            message = value
            break
    result = content.get("result")
    ms: Any = None
    for key in ("totalTimeMs", "durationMs"):
        value = content.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            ms = value if abs(value) < 1e15 else None
            break
    return {
        "dir": "INBOUND" if type_name == "InboundDHTQuery" else "OUTBOUND",
        "peers": peers,
        "message": message,
        "result": result.upper() if isinstance(result, str) else "",
        "ms": ms,
    }


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # NaN, Infinity: a browser's JSON.parse refuses


def event_to_json(event: pb.Event) -> JSON:
    """An ``Event``; ``content`` parsed from its JSON text (kept as text if it is not
    JSON (``NaN`` and ``Infinity`` are not), nests too deeply to parse, or is longer
    than :data:`MAX_PARSED_CONTENT`, and then cut at :data:`MAX_EVENT_CONTENT`);
    ``query`` added for a DHT query event; the type name capped at :data:`MAX_NAME`.

    ``seq`` is 0 here; the store numbers events as they arrive.
    """
    text = event.content
    content: Any = capped(text, MAX_EVENT_CONTENT)
    if not text:
        content = {}
    elif len(text) <= MAX_PARSED_CONTENT:
        with contextlib.suppress(ValueError, RecursionError):  # not JSON, or nested too deep
            content = json.loads(text, parse_constant=_not_json)
    type_name = capped(event.type.name, MAX_NAME)
    out = {"seq": 0, "ts": event.ts, "type": type_name, "content": content}
    says = describe(type_name, content)
    if says is not None:
        out["says"] = says
    query = dht_query(type_name, content)
    if query is not None:
        out["query"] = query
    return out
