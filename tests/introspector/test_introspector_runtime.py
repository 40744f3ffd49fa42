"""Runtime metadata and the declared event types."""

from __future__ import annotations

import importlib.metadata

import trio
from event_checks import ToolkitDhtShape
from introspector_harness import running_hosts
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

CONNECTION_EVENTS = {"ConnectionOpened", "ConnectionClosed", "StreamOpened", "StreamClosed"}
DHT_EVENTS = {"InboundDHTQuery", "OutboundDHTQuery"}
#: Every live node's own events (PROTOCOL.md §3.1): identify and its listen addresses.
NODE_EVENTS = {"PeerIdentified", "ListenAddrsChanged"}


async def test_runtime_fields() -> None:
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            intro = HostIntrospector(host)
            runtime = intro.runtime()
            assert runtime.implementation == "py-libp2p"
            assert runtime.version == importlib.metadata.version("libp2p") == "0.8.1"
            assert "Python" in runtime.platform or "CPython" in runtime.platform
            assert runtime.peer_id == host.get_id().to_base58()
            names = {t.name for t in runtime.event_types}
            assert names == CONNECTION_EVENTS | NODE_EVENTS
            valid = set(pb.EventType.EventProperty.PropertyType.values())
            for etype in runtime.event_types:
                assert etype.property_types
                assert len({p.name for p in etype.property_types}) == len(etype.property_types)
                assert all(p.type in valid for p in etype.property_types)
            # Closing events say how it ended, as strings.
            types = {t.name: {p.name: p.type for p in t.property_types} for t in runtime.event_types}
            for name in ("StreamClosed", "ConnectionClosed"):
                assert types[name]["status"] == pb.EventType.EventProperty.STRING
                assert types[name]["reason"] == pb.EventType.EventProperty.STRING
            P = pb.EventType.EventProperty
            declared = {
                t.name: [(p.name, p.type, p.has_multiple) for p in t.property_types]
                for t in runtime.event_types
            }
            assert declared["PeerIdentified"] == [
                ("peerId", P.PEERID, False),
                ("agentVersion", P.STRING, False),
                ("protocolVersion", P.STRING, False),
                ("protocols", P.STRING, True),
            ]
            assert declared["ListenAddrsChanged"] == [
                ("added", P.MULTIADDR, True),
                ("removed", P.MULTIADDR, True),
            ]
            # Serializes as a ServerMessage payload.
            msg = pb.ServerMessage(version=pb.Version(version=1), runtime=runtime)
            assert pb.ServerMessage.FromString(msg.SerializeToString()).runtime == runtime
            intro.detach()


async def test_runtime_declares_dht_events_when_dht_given() -> None:
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            intro = HostIntrospector(host, dht=KadDHT(host, DHTMode.SERVER))
            names = {t.name for t in intro.runtime().event_types}
            assert names == CONNECTION_EVENTS | NODE_EVENTS | DHT_EVENTS
            types = {t.name: t for t in intro.runtime().event_types}
            P = pb.EventType.EventProperty
            for name in DHT_EVENTS:
                declared = {p.name: (p.type, p.has_multiple) for p in types[name].property_types}
                assert declared == {
                    "direction": (P.STRING, False),
                    "peerIds": (P.PEERID, True),
                    "queryId": (P.STRING, False),
                    "targetPeerId": (P.STRING, False),
                    "totalTimeMs": (P.NUMBER, False),
                    "totalSteps": (P.NUMBER, False),
                    "trigger": (P.STRING, False),
                    "type": (P.STRING, False),
                    "messageType": (P.STRING, False),
                    "result": (P.STRING, False),
                }
            intro.detach()


async def test_dht_property_types_agree_with_the_toolkits_runtime(fixtures_dir) -> None:
    """Where the toolkit's own recording declares a DHT query property, ours is declared
    the same (its events table picks a column's renderer by these)."""
    theirs = ToolkitDhtShape.read(fixtures_dir / "sample-1min.mock").declared
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            intro = HostIntrospector(host, dht=KadDHT(host, DHTMode.SERVER))
            ours = {
                t.name: {p.name: (p.type, p.has_multiple) for p in t.property_types}
                for t in intro.runtime().event_types
            }
            for name in DHT_EVENTS:
                assert theirs[name], name
                for prop, declared in theirs[name].items():
                    assert ours[name][prop] == declared, (name, prop)
            intro.detach()
