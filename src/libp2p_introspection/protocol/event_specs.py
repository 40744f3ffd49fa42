"""The event types every source shares (:class:`EventSpec`): names and declared properties.

A live host's introspector and the synthetic node declare these in their
``Runtime`` (PROTOCOL.md §3); the content of each is built by
:mod:`libp2p_introspection.protocol.event_payloads`, and events are emitted by
:mod:`libp2p_introspection.protocol.events`. Nothing here knows py-libp2p.

The DHT query events (``InboundDHTQuery``, ``OutboundDHTQuery``) have the keys
the observer-toolkit UI reads (PROTOCOL.md §3, "Interop rules learned from
existing clients"); :data:`DHT_QUERY_PROPERTIES` says what each one holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from libp2p_introspection.protocol import pb

PropertyType = pb.EventType.EventProperty.PropertyType
STRING = pb.EventType.EventProperty.STRING
NUMBER = pb.EventType.EventProperty.NUMBER
TIME = pb.EventType.EventProperty.TIME
PEERID = pb.EventType.EventProperty.PEERID
MULTIADDR = pb.EventType.EventProperty.MULTIADDR
JSON = pb.EventType.EventProperty.JSON


#: One declared property: ``(name, PropertyType)``, or ``(name, PropertyType, has_multiple)``
#: for a property whose value is a JSON list of such values.
Property = tuple[str, int] | tuple[str, int, bool]


@dataclass(frozen=True)
class EventSpec:
    """One event type: its name and its declared properties (:data:`Property`), in order."""

    name: str
    properties: tuple[Property, ...]

    @property
    def property_names(self) -> tuple[str, ...]:
        """The property names, which are the JSON content's keys."""
        return tuple(prop[0] for prop in self.properties)

    def to_pb(self) -> pb.EventType:
        """The ``EventType`` message declaring this type (for ``Runtime.event_types``)."""
        return pb.EventType(
            name=self.name,
            property_types=[
                pb.EventType.EventProperty(
                    name=prop[0], type=prop[1], has_multiple=len(prop) > 2 and bool(prop[2])
                )
                for prop in self.properties
            ],
        )


#: A connection finished its upgrade and joined the swarm (``Swarm`` notifee ``connected``).
CONNECTION_OPENED = EventSpec(
    "ConnectionOpened",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("direction", STRING),  # "inbound" | "outbound"
        ("localAddr", MULTIADDR),
        ("remoteAddr", MULTIADDR),
        ("transport", STRING),
        ("multiplexer", STRING),
        ("encryption", STRING),
        ("openTs", TIME),
    ),
)

#: A connection closed (``Swarm`` notifee ``disconnected``); totals are at the raw transport layer.
CONNECTION_CLOSED = EventSpec(
    "ConnectionClosed",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("direction", STRING),
        ("remoteAddr", MULTIADDR),
        ("openTs", TIME),
        ("closeTs", TIME),
        ("bytesIn", NUMBER),
        ("bytesOut", NUMBER),
        # The Connection.status it ends with: "CLOSED" | "ERROR".
        ("status", STRING),
        # ERROR: the transport/security/muxer failure, e.g. "ConnectionResetError: [Errno 104]
        # Connection reset by peer"; CLOSED: "closed locally" | "closed by remote" | "closed".
        ("reason", STRING),
    ),
)

#: A stream's protocol was negotiated (``NetStream.set_protocol``), so it carries the protocol.
STREAM_OPENED = EventSpec(
    "StreamOpened",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("streamId", STRING),
        ("protocol", STRING),
        ("direction", STRING),
        ("openTs", TIME),
    ),
)

#: A stream closed or was reset (``Swarm`` notifee ``closed_stream``, or the muxer's
#: state and hooks for what py-libp2p does not notify); totals are payload bytes.
STREAM_CLOSED = EventSpec(
    "StreamClosed",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("streamId", STRING),
        ("protocol", STRING),  # "" when the stream closed before negotiating one
        ("direction", STRING),
        ("openTs", TIME),
        ("closeTs", TIME),
        ("bytesIn", NUMBER),
        ("bytesOut", NUMBER),
        ("status", STRING),  # the Stream.status it ends with: "CLOSED" | "ERROR"
        # CLOSED: "closed"; ERROR: "reset by remote" | "reset locally" | "connection closed" |
        # "connection error" (its connection ended with it open) | "stream error"
        ("reason", STRING),
    ),
)

#: The content of both DHT query events: one event per Kademlia RPC, sent or answered.
#: ``Event.ts`` is when the request was sent (outbound) or received (inbound).
DHT_QUERY_PROPERTIES: tuple[Property, ...] = (
    ("direction", STRING),  # "INBOUND" | "OUTBOUND"
    # [the remote peer], written exactly as in PeerInDHT.peer_id (base58). Readers accept
    # null entries: the observer-toolkit's own recordings hold some.
    ("peerIds", PEERID, True),
    ("queryId", STRING),  # random hex, one per RPC
    # FIND_NODE: the key looked up as a base58 peer id; other messages: the key in hex
    ("targetPeerId", STRING),
    ("totalTimeMs", NUMBER),  # the RPC's duration, ms
    ("totalSteps", NUMBER),  # always 1: one event is one RPC, not a whole lookup
    # "DISCOVERY": sent by a routing-table refresh (py-libp2p's refresh entry points);
    # "API" otherwise, and for every inbound request (it does not say why it was sent)
    ("trigger", STRING),
    # "VALUE" (GET_VALUE, PUT_VALUE), "PROVIDER" (GET_PROVIDERS, ADD_PROVIDER), "CONTENT" (others)
    ("type", STRING),
    # the py-libp2p message name: FIND_NODE, GET_VALUE, PUT_VALUE, GET_PROVIDERS, ADD_PROVIDER,
    # PING; UNKNOWN for an inbound request that failed before its type could be read
    ("messageType", STRING),
    # "SUCCESS" | "ERROR" | "TIMEOUT" (outbound only); a cancelled RPC emits no event
    ("result", STRING),
)

#: A Kademlia request from a peer was answered (``result`` SUCCESS) or failed (ERROR).
INBOUND_DHT_QUERY = EventSpec("InboundDHTQuery", DHT_QUERY_PROPERTIES)

#: One Kademlia RPC we sent to a peer finished (SUCCESS, ERROR or TIMEOUT).
OUTBOUND_DHT_QUERY = EventSpec("OutboundDHTQuery", DHT_QUERY_PROPERTIES)

#: A peer told us who it is: one event per identify message received from it (its answer
#: to our ``/ipfs/id/1.0.0`` request, or an ``/ipfs/id/push/1.0.0`` it sent), PROTOCOL.md §3.1.
PEER_IDENTIFIED = EventSpec(
    "PeerIdentified",
    (
        ("peerId", PEERID),
        ("agentVersion", STRING),
        ("protocolVersion", STRING),
        ("protocols", STRING, True),  # the protocol ids the peer says it speaks
    ),
)

#: The addresses the node's transports are bound to changed (``NodeInfo.listen_addrs``).
LISTEN_ADDRS_CHANGED = EventSpec(
    "ListenAddrsChanged", (("added", MULTIADDR, True), ("removed", MULTIADDR, True))
)

#: AutoNAT's verdict on the node changed: ``reachability`` is the ``NodeInfo.Reachability``
#: name ("UNKNOWN" | "PUBLIC" | "PRIVATE" | "NOT_RUNNING").
REACHABILITY_CHANGED = EventSpec("ReachabilityChanged", (("reachability", STRING),))

#: The content of both mesh events: ``peerId`` the peer that joined (graft) or left
#: (prune) our mesh of ``topic``; ``direction`` who asked for it.
PUBSUB_MESH_PROPERTIES: tuple[Property, ...] = (
    ("peerId", PEERID),
    ("topic", STRING),
    # "INBOUND": the peer sent the GRAFT/PRUNE; "OUTBOUND": we did
    ("direction", STRING),
)

#: A peer (or this node itself: its own peer id) subscribed to or unsubscribed from a
#: pubsub topic; ``subscribed`` is a JSON boolean, the state after the change.
PUBSUB_SUBSCRIPTION_CHANGED = EventSpec(
    "PubsubSubscriptionChanged", (("peerId", PEERID), ("topic", STRING), ("subscribed", JSON))
)

#: A peer joined our gossipsub mesh of a topic (a GRAFT it sent that we accepted, or
#: one we sent).
PUBSUB_GRAFT = EventSpec("PubsubGraft", PUBSUB_MESH_PROPERTIES)

#: A peer left our gossipsub mesh of a topic (a PRUNE it sent, or one we sent).
PUBSUB_PRUNE = EventSpec("PubsubPrune", PUBSUB_MESH_PROPERTIES)

#: ``direction`` of :data:`PUBSUB_GRAFT` / :data:`PUBSUB_PRUNE`: the peer asked ...
MESH_INBOUND = "INBOUND"
#: ... or we did.
MESH_OUTBOUND = "OUTBOUND"

CONNECTION_EVENTS: tuple[EventSpec, ...] = (
    CONNECTION_OPENED,
    CONNECTION_CLOSED,
    STREAM_OPENED,
    STREAM_CLOSED,
)
DHT_EVENTS: tuple[EventSpec, ...] = (INBOUND_DHT_QUERY, OUTBOUND_DHT_QUERY)
#: What a node says about itself and its peers (identify, listen addresses, AutoNAT).
#: A live host declares ``ReachabilityChanged`` only when it was given an AutoNAT service.
NODE_EVENTS: tuple[EventSpec, ...] = (PEER_IDENTIFIED, LISTEN_ADDRS_CHANGED, REACHABILITY_CHANGED)
PUBSUB_EVENTS: tuple[EventSpec, ...] = (PUBSUB_SUBSCRIPTION_CHANGED, PUBSUB_GRAFT, PUBSUB_PRUNE)
