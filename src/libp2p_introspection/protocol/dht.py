"""The DHT query vocabulary every source shares: outcomes, directions, triggers,
the query events' content and the snapshot's query counters.

One ``InboundDHTQuery`` / ``OutboundDHTQuery`` event is one Kademlia RPC; its
content keys are :data:`~libp2p_introspection.protocol.events.DHT_QUERY_PROPERTIES`
(PROTOCOL.md §3). A live host's introspector
(:mod:`libp2p_introspection.introspector.dht`) and the synthetic node build
the content and count the outcomes here; nothing in this module knows py-libp2p.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.protocol import pb

#: Query results, as the events and the ``QueryGauge`` fields name them.
SUCCESS, ERROR, TIMEOUT = "SUCCESS", "ERROR", "TIMEOUT"
#: A call its caller cancelled: no event, not counted.
CANCELLED = "CANCELLED"
INBOUND, OUTBOUND = "INBOUND", "OUTBOUND"
DISCOVERY, API = "DISCOVERY", "API"
#: Message name of an inbound request that failed before its type could be read.
UNKNOWN = "UNKNOWN"

_QUERY_TYPES = {
    "GET_VALUE": "VALUE",
    "PUT_VALUE": "VALUE",
    "GET_PROVIDERS": "PROVIDER",
    "ADD_PROVIDER": "PROVIDER",
}


def query_type(message_type: str) -> str:
    """The event's ``type`` for a Kademlia message name: VALUE, PROVIDER or CONTENT."""
    return _QUERY_TYPES.get(message_type, "CONTENT")


def new_query_id() -> str:
    """A random ``queryId``: 64 hex digits, one per RPC."""
    return secrets.token_hex(32)


def query_content(
    *,
    direction: str,
    peer: str,
    message_type: str,
    target: str,
    total_time_ms: int,
    trigger: str,
    result: str,
    query_id: str,
) -> dict[str, Any]:
    """One DHT query event's content (the keys of ``DHT_QUERY_PROPERTIES``).

    :param direction: :data:`INBOUND` | :data:`OUTBOUND`.
    :param peer: the remote peer as ``PeerInDHT.peer_id`` writes it ("" if unknown:
        then ``peerIds`` is empty).
    :param message_type: the Kademlia message name (FIND_NODE, GET_VALUE, ...).
    :param target: the ``targetPeerId`` text (base58 for FIND_NODE, hex otherwise).
    :param total_time_ms: the RPC's duration, ms (floored at 0, truncated to an int).
    :param trigger: :data:`DISCOVERY` | :data:`API`.
    :param result: :data:`SUCCESS` | :data:`ERROR` | :data:`TIMEOUT`.
    """
    return {
        "direction": direction,
        "peerIds": [peer] if peer else [],
        "queryId": query_id,
        "targetPeerId": target,
        "totalTimeMs": max(0, int(total_time_ms)),
        "totalSteps": 1,
        "trigger": trigger,
        "type": query_type(message_type),
        "messageType": message_type,
        "result": result,
    }


@dataclass
class QueryCounts:
    """Cumulative query outcomes (the ``QueryGauge`` fields), one per direction."""

    success: int = 0
    error: int = 0
    timeout: int = 0

    def count(self, result: str) -> None:
        """Count one query with outcome ``result`` (``CANCELLED`` is not counted)."""
        if result == SUCCESS:
            self.success += 1
        elif result == ERROR:
            self.error += 1
        elif result == TIMEOUT:
            self.timeout += 1

    def to_pb(self, out: pb.DHT.QueryGauge) -> None:
        """Fill a ``QueryGauge`` (always present)."""
        out.SetInParent()
        out.success = self.success
        out.error = self.error
        out.timeout = self.timeout
