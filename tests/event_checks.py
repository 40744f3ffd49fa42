"""Checks and fakes shared by the tests of every source that emits events."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
from libp2p.peer.id import ID

from libp2p_introspection.protocol import pb

P = pb.EventType.EventProperty


class FakeClock:
    """A settable wall clock, ms since epoch (for ``clock_ms=`` of a source)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def check_value(ptype: int, value: Any) -> None:
    """A JSON value matches its declared property type."""
    if ptype == P.STRING:
        assert isinstance(value, str)
    elif ptype == P.NUMBER:
        assert isinstance(value, int | float) and not isinstance(value, bool)
    elif ptype == P.TIME:
        assert isinstance(value, int) and value > 0
    elif ptype == P.PEERID:
        assert isinstance(value, str)
        ID.from_base58(value)
    elif ptype == P.MULTIADDR:
        assert isinstance(value, str)
        multiaddr.Multiaddr(value)
    elif ptype == P.JSON:
        json.dumps(value)
    else:  # pragma: no cover
        raise AssertionError(f"unknown property type {ptype}")


def check_events(runtime: pb.Runtime, events: list[pb.Event]) -> None:
    """Every event is of a type the runtime declares; its JSON content has exactly the
    declared property names, in order, with values of the declared types (a list of
    them where the property ``has_multiple``)."""
    declared = {t.name: t for t in runtime.event_types}
    for event in events:
        etype = declared[event.type.name]
        if event.type.property_types:
            assert list(event.type.property_types) == list(etype.property_types)
        content = json.loads(event.content)
        assert isinstance(content, dict)
        assert list(content) == [p.name for p in etype.property_types]
        for prop in etype.property_types:
            if prop.has_multiple:
                assert isinstance(content[prop.name], list), prop.name
                for item in content[prop.name]:
                    check_value(prop.type, item)
            else:
                check_value(prop.type, content[prop.name])


# ------------------------------------------------ the observer-toolkit's DHT query events

DHT_QUERY_TYPES = ("InboundDHTQuery", "OutboundDHTQuery")
#: Keys whose values the toolkit reads as one of a few names (compared as sets).
ENUM_KEYS = ("direction", "trigger", "type", "result")
#: The one key PROTOCOL.md §3 adds to the toolkit's: py-libp2p's message name.
OUR_EXTRA_KEYS = ("messageType",)
HEX = re.compile(r"[0-9a-f]+")


def json_kind(value: Any) -> str:
    """A JSON value's kind as the comparison sees it: list entries by kind, null included."""
    if isinstance(value, list):
        return "list[" + "|".join(sorted({json_kind(v) for v in value})) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@dataclass
class ToolkitDhtShape:
    """What the observer-toolkit's own recording shows of its DHT query events.

    ``keys``: the content keys, in order (one order for every event of a type);
    ``kinds``: key -> the JSON kinds of its values (lists by their entries'
    kinds, null entries included); ``values``: key -> the names seen, for
    :data:`ENUM_KEYS`; ``declared``: the ``Runtime``'s property types, name ->
    ``(type, has_multiple)``.
    """

    keys: dict[str, list[str]]
    kinds: dict[str, dict[str, set[str]]]
    values: dict[str, dict[str, set[Any]]]
    declared: dict[str, dict[str, tuple[int, bool]]]

    @classmethod
    def read(cls, path: Path) -> ToolkitDhtShape:
        from libp2p_introspection.protocol.recording import RecordingReader

        keys: dict[str, list[str]] = {}
        kinds: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        values: dict[str, dict[str, set[Any]]] = defaultdict(lambda: defaultdict(set))
        declared: dict[str, dict[str, tuple[int, bool]]] = {}
        with RecordingReader(path) as reader:
            for message in reader.messages():
                kind = message.WhichOneof("payload")
                if kind == "runtime":
                    for etype in message.runtime.event_types:
                        if etype.name in DHT_QUERY_TYPES:
                            declared[etype.name] = {
                                p.name: (p.type, p.has_multiple) for p in etype.property_types
                            }
                if kind != "event" or message.event.type.name not in DHT_QUERY_TYPES:
                    continue
                name = message.event.type.name
                content = json.loads(message.event.content)
                assert keys.setdefault(name, list(content)) == list(content)
                for key, value in content.items():
                    kinds[name][key].add(json_kind(value))
                    if key in ENUM_KEYS:
                        values[name][key].add(value)
        assert set(keys) == set(DHT_QUERY_TYPES), "the fixture holds both event types"
        return cls(keys, kinds, values, declared)

    def check(self, event: pb.Event, dht_peer_ids: set[str] | None = None) -> dict[str, Any]:
        """``event`` (one of ours) has the toolkit's keys in its order, plus
        ``messageType`` before ``result``; each shared key's values are of a kind the
        toolkit's own events have (``peerIds`` entries: ours are base58 peer ids, never
        null); enumerated keys hold names the toolkit uses; ``queryId`` is hex;
        ``totalSteps`` is 1. With ``dht_peer_ids``, ``peerIds`` is one of them.
        Returns the decoded content."""
        name = event.type.name
        content = json.loads(event.content)
        theirs = self.keys[name]
        expected = theirs[:-1] + list(OUR_EXTRA_KEYS) + theirs[-1:]
        assert list(content) == expected, (list(content), expected)
        for key in theirs:
            kind = json_kind(content[key])
            if key == "peerIds":
                assert kind == "list[str]" and len(content[key]) == 1, content[key]
                assert "list[null|str]" in self.kinds[name][key]
                ID.from_base58(content[key][0])
            else:
                assert kind in self.kinds[name][key], (key, kind, self.kinds[name][key])
            if key in ENUM_KEYS:
                assert content[key] in self.values[name][key], (key, content[key])
        assert HEX.fullmatch(content["queryId"]) and len(content["queryId"]) == 64
        assert content["totalSteps"] == 1
        assert isinstance(content["messageType"], str) and content["messageType"]
        if dht_peer_ids is not None:
            assert content["peerIds"][0] in dht_peer_ids, content["peerIds"]
        return content
