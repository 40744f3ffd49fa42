"""Kademlia DHT: routing table buckets by cpl, query counters and query events."""

from __future__ import annotations

import hashlib
import json
from contextlib import AsyncExitStack
from typing import Any

import trio
import varint
from introspector_harness import EventLog, FakeClock, connect, running_hosts, wait_until
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.tools.anyio_service import background_trio_service

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.dht import common_prefix_len
from libp2p_introspection.protocol import pb


def _cpl(a: Any, b: Any) -> int:
    ka = hashlib.sha256(a.to_bytes()).digest()
    kb = hashlib.sha256(b.to_bytes()).digest()
    bits = bin(int.from_bytes(ka, "big") ^ int.from_bytes(kb, "big"))[2:].zfill(256)
    return len(bits) - len(bits.lstrip("0"))


def test_common_prefix_len() -> None:
    assert common_prefix_len(b"\x00" * 32, b"\x00" * 32) == 256
    assert common_prefix_len(b"\x80" + b"\x00" * 31, b"\x00" * 32) == 0
    assert common_prefix_len(b"\x01" + b"\x00" * 31, b"\x00" * 32) == 7
    assert common_prefix_len(b"\x00\x01" + b"\x00" * 30, b"\x00" * 32) == 15


async def test_dht_buckets_counters_and_events() -> None:
    clock = FakeClock()
    with trio.fail_after(45):
        async with running_hosts(3) as hosts, AsyncExitStack() as stack:
            dhts = [KadDHT(h, DHTMode.SERVER) for h in hosts]
            intros = [
                HostIntrospector(h, dht=d, clock_ms=clock) for h, d in zip(hosts, dhts, strict=True)
            ]
            logs = [EventLog() for _ in hosts]
            for intro, log in zip(intros, logs, strict=True):
                intro.set_event_sink(log)
            await connect(hosts[0], hosts[1])
            await connect(hosts[1], hosts[2])
            for dht in dhts:
                await stack.enter_async_context(background_trio_service(dht))

            # h0 only knows h1; finding h2 goes through h1's routing table.
            found = await dhts[0].find_peer(hosts[2].get_id())
            assert found is not None and found.peer_id == hosts[2].get_id()
            await dhts[0].put_value("/test/key", b"value")
            assert await dhts[2].get_value("/test/key") == b"value"
            await wait_until(lambda: dhts[0].get_routing_table_size() >= 2)

            clock.advance(1_500)
            state = intros[0].state()
            dht = state.subsystems.dht
            assert state.subsystems.HasField("dht")
            assert dht.protocol == PROTOCOL_ID == "/ipfs/kad/1.0.0"
            assert dht.enabled
            assert dht.start_ts == clock.now - 1_500
            assert (dht.params.k, dht.params.alpha, dht.params.beta) == (20, 10, 3)
            assert dht.params.disjoint_paths == 0

            local = hosts[0].get_id()
            table = set(dhts[0].routing_table.get_peer_ids())
            reported = {p.peer_id: (b.cpl, p) for b in dht.buckets for p in b.peers}
            assert set(reported) == {p.to_base58() for p in table}
            for peer in table:
                cpl, entry = reported[peer.to_base58()]
                assert cpl == _cpl(local, peer)
                assert entry.status == pb.DHT.PeerInDHT.ACTIVE
                assert 0 < entry.age_in_bucket <= 1_500
            assert [b.cpl for b in dht.buckets] == sorted({b.cpl for b in dht.buckets})

            assert dht.outgoing_queries.success > 0
            assert dht.incoming_queries.success > 0
            # h2 answered h0's GET/PUT and h1's lookups.
            dht2 = intros[2].state().subsystems.dht
            assert dht2.incoming_queries.success > 0

            out0 = logs[0].named("OutboundDHTQuery")
            assert {e["queryType"] for e in out0} >= {"FIND_NODE", "PUT_VALUE"}
            assert sum(e["result"] == "success" for e in out0) == dht.outgoing_queries.success
            in2 = logs[2].named("InboundDHTQuery")
            assert any(e["queryType"] == "PUT_VALUE" for e in in2)
            assert sum(e["result"] == "success" for e in in2) == dht2.incoming_queries.success
            assert all(e.ts == clock.now - 1_500 for e in logs[0].events if "DHT" in e.type.name)

            for intro in intros:
                intro.detach()
            assert "_query_peer_for_closest" not in vars(dhts[0].peer_routing)
            assert "_do_handle_stream" not in vars(dhts[0])
            assert "add_peer" not in vars(dhts[0].routing_table)


async def test_dht_failed_queries_are_counted_as_errors() -> None:
    with trio.fail_after(30):
        async with running_hosts(3) as (node, plain, client), AsyncExitStack() as stack:
            dht = KadDHT(node, DHTMode.SERVER)
            intro = HostIntrospector(node, dht=dht)
            log = EventLog()
            intro.set_event_sink(log)
            await stack.enter_async_context(background_trio_service(dht))

            # Outbound: a peer that does not speak Kademlia.
            await connect(node, plain)
            result = await dht.peer_routing._query_peer_for_closest(plain.get_id(), b"k" * 32)
            assert result == []
            gauge = intro.state().subsystems.dht.outgoing_queries
            assert gauge.error >= 1
            errors = [e for e in log.named("OutboundDHTQuery") if e["result"] == "error"]
            assert errors and errors[0]["peerId"] == plain.get_id().to_base58()

            # Inbound: a malformed request on a Kademlia stream.
            await connect(client, node)
            stream = await client.new_stream(node.get_id(), [PROTOCOL_ID])
            garbage = b"\xff\xff\xff not a protobuf"
            await stream.write(varint.encode(len(garbage)) + garbage)
            await wait_until(lambda: intro.state().subsystems.dht.incoming_queries.error >= 1)
            (event,) = [e for e in log.named("InboundDHTQuery") if e["result"] == "error"]
            assert event == {
                "peerId": client.get_id().to_base58(),
                "queryType": "UNKNOWN",
                "result": "error",
            }
            assert intro.state().subsystems.dht.incoming_queries.success == 0
            json.dumps(event)
            intro.detach()
