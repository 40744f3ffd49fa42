"""Checks and fakes shared by the tests of every source that emits events."""

from __future__ import annotations

import json
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
    declared property names, in order, with values of the declared types."""
    declared = {t.name: t for t in runtime.event_types}
    for event in events:
        etype = declared[event.type.name]
        if event.type.property_types:
            assert list(event.type.property_types) == list(etype.property_types)
        content = json.loads(event.content)
        assert isinstance(content, dict)
        assert list(content) == [p.name for p in etype.property_types]
        for prop in etype.property_types:
            check_value(prop.type, content[prop.name])
