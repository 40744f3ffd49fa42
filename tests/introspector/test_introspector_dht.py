"""Kademlia DHT: routing table buckets by cpl, query counters and query events (in the
observer-toolkit's shape, checked against its own recording: PROTOCOL.md §3)."""

from __future__ import annotations

import hashlib
import json
from contextlib import AsyncExitStack
from typing import Any

import trio
import varint
from event_checks import ToolkitDhtShape
from introspector_harness import EventLog, FakeClock, connect, running_hosts, wait_until
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.tools.anyio_service import background_trio_service

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.dht_table import common_prefix_len
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
            assert {e["messageType"] for e in out0} >= {"FIND_NODE", "PUT_VALUE"}
            assert sum(e["result"] == "SUCCESS" for e in out0) == dht.outgoing_queries.success
            in2 = logs[2].named("InboundDHTQuery")
            assert any(e["messageType"] == "PUT_VALUE" for e in in2)
            assert sum(e["result"] == "SUCCESS" for e in in2) == dht2.incoming_queries.success
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
            errors = [e for e in log.named("OutboundDHTQuery") if e["result"] == "ERROR"]
            assert errors and errors[0]["peerIds"] == [plain.get_id().to_base58()]
            assert errors[0]["messageType"] == "FIND_NODE"

            # Inbound: a malformed request on a Kademlia stream.
            await connect(client, node)
            stream = await client.new_stream(node.get_id(), [PROTOCOL_ID])
            garbage = b"\xff\xff\xff not a protobuf"
            await stream.write(varint.encode(len(garbage)) + garbage)
            await wait_until(lambda: intro.state().subsystems.dht.incoming_queries.error >= 1)
            (event,) = [e for e in log.named("InboundDHTQuery") if e["result"] == "ERROR"]
            assert event["peerIds"] == [client.get_id().to_base58()]
            # The bytes framed a whole request, which py-libp2p could not parse.
            assert (event["messageType"], event["type"]) == ("UNKNOWN", "CONTENT")
            assert intro.state().subsystems.dht.incoming_queries.success == 0
            json.dumps(event)
            intro.detach()
            # Detached, the DHT tracker leaves nothing behind on the host's registry
            # (its own detach used to be skipped: HostIntrospector.detach guarded it
            # after marking itself detached).
            tracker = intro._dht
            assert tracker is not None and not tracker._active
            assert tracker._link_stream not in intro._registry.stream_listeners


# ------------------------------------------- query events in the observer-toolkit's shape


def _dht_events(log: EventLog) -> list[pb.Event]:
    return [e for e in log.events if e.type.name in ("InboundDHTQuery", "OutboundDHTQuery")]


def _table_ids(intro: HostIntrospector) -> set[str]:
    """The peer ids of the snapshot's routing table, as ``PeerInDHT.peer_id`` writes them."""
    return {p.peer_id for b in intro.state().subsystems.dht.buckets for p in b.peers}


async def test_query_events_have_the_toolkits_keys_and_types(fixtures_dir: Any) -> None:
    """Every RPC, sent or answered, is one event with the keys and value kinds of the
    toolkit's own recording; peerIds names the peer as the routing table does; triggers
    come from py-libp2p's call path; targets are the keys the RPCs carried."""
    shape = ToolkitDhtShape.read(fixtures_dir / "sample-1min.mock")
    with trio.fail_after(60):
        async with running_hosts(3) as hosts:
            # No background service: every RPC below is one the test caused.
            dhts = [KadDHT(h, DHTMode.SERVER) for h in hosts]
            intros = [HostIntrospector(h, dht=d) for h, d in zip(hosts, dhts, strict=True)]
            logs = [EventLog() for _ in hosts]
            for intro, log in zip(intros, logs, strict=True):
                intro.set_event_sink(log)
            await connect(hosts[0], hosts[1])
            await connect(hosts[1], hosts[2])
            for dht in dhts:
                for peer in dht.host.get_connected_peers():
                    await dht.add_peer(peer, skip_server_mode_check=True)

            # API: what an application asks for.
            assert await dhts[0].find_peer(hosts[2].get_id()) is not None
            await dhts[0].put_value("/test/key", b"value")
            assert await dhts[2].get_value("/test/key") == b"value"
            content_key = hashlib.sha256(b"content").hexdigest()
            await dhts[0].provide(content_key)
            assert await dhts[2].find_providers(content_key)
            api_events = len(logs[0].events)
            # DISCOVERY: py-libp2p's own routing-table refresh.
            await dhts[0].refresh_routing_table()
            refresh = logs[0].events[api_events:]
            await wait_until(lambda: all(d.get_routing_table_size() == 2 for d in dhts))

            ids = [h.get_id().to_base58() for h in hosts]
            for i, log in enumerate(logs):
                table = _table_ids(intros[i])
                assert table == set(ids) - {ids[i]}
                for event in _dht_events(log):
                    content = shape.check(event, dht_peer_ids=table)
                    direction = "INBOUND" if event.type.name == "InboundDHTQuery" else "OUTBOUND"
                    assert content["direction"] == direction
            before_refresh = EventLog()
            before_refresh.events = logs[0].events[:api_events]
            out0 = [json.loads(e.content) for e in _dht_events(before_refresh)]
            out0 = [e for e in out0 if e["direction"] == "OUTBOUND"]
            assert {e["trigger"] for e in out0} == {"API"}
            assert {e["messageType"] for e in out0} >= {"FIND_NODE", "PUT_VALUE", "ADD_PROVIDER"}
            kinds = {(e["messageType"], e["type"]) for e in out0}
            assert kinds >= {("FIND_NODE", "CONTENT"), ("PUT_VALUE", "VALUE")}
            assert ("ADD_PROVIDER", "PROVIDER") in kinds
            # Targets: FIND_NODE's key as a peer id, the others' keys in hex.
            targets = {e["targetPeerId"] for e in out0 if e["messageType"] == "FIND_NODE"}
            assert ids[2] in targets  # find_peer(h2)
            puts = {e["targetPeerId"] for e in out0 if e["messageType"] == "PUT_VALUE"}
            assert puts == {b"/test/key".hex()}
            adds = {e["targetPeerId"] for e in out0 if e["messageType"] == "ADD_PROVIDER"}
            assert adds == {content_key}
            # The peer that stored the value saw the same key, inbound.
            in2 = [json.loads(e.content) for e in _dht_events(logs[2])]
            stored = [
                e for e in in2 if e["direction"] == "INBOUND" and e["messageType"] == "PUT_VALUE"
            ]
            assert stored and {e["targetPeerId"] for e in stored} == {b"/test/key".hex()}
            assert {e["trigger"] for e in in2 if e["direction"] == "INBOUND"} == {"API"}
            gets = [e for e in in2 if e["messageType"] == "GET_PROVIDERS"]
            assert gets and all(e["type"] == "PROVIDER" for e in gets)
            # Every RPC the refresh sent is a DISCOVERY (and it sent some).
            sent = [json.loads(e.content) for e in refresh if e.type.name == "OutboundDHTQuery"]
            assert sent and {e["trigger"] for e in sent} == {"DISCOVERY"}
            assert ids[0] in {e["targetPeerId"] for e in sent}  # its self-lookup
            # Ids are one per RPC; results are counted as the events say.
            all_events = [json.loads(e.content) for log in logs for e in _dht_events(log)]
            assert len({e["queryId"] for e in all_events}) == len(all_events)
            gauge = intros[0].state().subsystems.dht
            out_all = [json.loads(e.content) for e in _dht_events(logs[0])]
            out_all = [e for e in out_all if e["direction"] == "OUTBOUND"]
            assert gauge.outgoing_queries.success == sum(e["result"] == "SUCCESS" for e in out_all)
            assert gauge.outgoing_queries.error == sum(e["result"] == "ERROR" for e in out_all)
            for intro in intros:
                intro.detach()
            assert "refresh_routing_table" not in vars(dhts[0])
            assert "refresh_routing_table" not in vars(dhts[0].peer_routing)


async def test_random_walk_refreshes_are_discovery() -> None:
    """With random walk on, py-libp2p refreshes through its RTRefreshManager (from its
    start, its periodic task and trigger_refresh): those RPCs are DISCOVERY too."""
    with trio.fail_after(60):
        async with running_hosts(3) as hosts:
            dhts = [
                KadDHT(h, DHTMode.SERVER, enable_random_walk=(i == 0)) for i, h in enumerate(hosts)
            ]
            intro = HostIntrospector(hosts[0], dht=dhts[0])
            log = EventLog()
            intro.set_event_sink(log)
            await connect(hosts[0], hosts[1])
            await connect(hosts[1], hosts[2])
            for dht in dhts:
                for peer in dht.host.get_connected_peers():
                    await dht.add_peer(peer, skip_server_mode_check=True)
            manager = dhts[0].rt_refresh_manager
            assert manager is not None
            await manager._do_refresh(force=True)  # what its own loops call
            walked = [
                json.loads(e.content) for e in log.events if e.type.name == "OutboundDHTQuery"
            ]
            assert walked and {e["trigger"] for e in walked} == {"DISCOVERY"}
            before = len(log.events)
            await dhts[0].put_value("/test/key", b"value")
            asked = [json.loads(e.content) for e in log.events[before:]]
            asked = [e for e in asked if e["direction"] == "OUTBOUND"]
            assert asked and {e["trigger"] for e in asked} == {"API"}
            intro.detach()
            assert "_do_refresh" not in vars(manager)


async def _read_varint(stream: Any) -> int:
    prefix = b""
    while not prefix or prefix[-1] & 0x80:
        byte = await stream.read(1)
        assert byte, "the stream ended inside a length prefix"
        prefix += byte
    return int(varint.decode_bytes(prefix))


class _SlowKademlia:
    """A Kademlia peer that reads one request and answers it (an empty FIND_NODE
    response) only once ``answer`` is set; ``got`` is set when the request arrived."""

    def __init__(self) -> None:
        self.got = trio.Event()
        self.answer = trio.Event()

    async def handle(self, stream: Any) -> None:
        length = await _read_varint(stream)
        body = b""
        while len(body) < length:
            chunk = await stream.read(length - len(body))
            assert chunk, "the request was cut short"
            body += chunk
        self.got.set()
        await self.answer.wait()
        reply = Message(type=Message.MessageType.FIND_NODE).SerializeToString()
        await stream.write(varint.encode(len(reply)) + reply)
        await stream.close()


async def test_outbound_ts_is_when_the_rpc_was_sent_and_a_cancelled_rpc_emits_nothing() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (node, slow_host):
            dht = KadDHT(node, DHTMode.SERVER)
            intro = HostIntrospector(node, dht=dht, clock_ms=clock)
            log = EventLog()
            intro.set_event_sink(log)
            slow = _SlowKademlia()
            slow_host.set_stream_handler(PROTOCOL_ID, slow.handle)
            await connect(node, slow_host)
            target = slow_host.get_id()
            sent_at = clock.now

            async def ask() -> None:
                await dht.peer_routing._query_peer_for_closest(
                    slow_host.get_id(), target.to_bytes()
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await slow.got.wait()
                clock.advance(5_000)  # answered five (fake) seconds after it was sent
                slow.answer.set()
            (event,) = [e for e in log.events if e.type.name == "OutboundDHTQuery"]
            content = json.loads(event.content)
            assert event.ts == sent_at
            assert content["result"] == "SUCCESS" and content["targetPeerId"] == target.to_base58()
            assert isinstance(content["totalTimeMs"], int) and content["totalTimeMs"] >= 0

            # A caller that gives up before the timeout: no event, not counted.
            slow.got, slow.answer = trio.Event(), trio.Event()
            gauge_before = intro.state().subsystems.dht.outgoing_queries
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await slow.got.wait()
                nursery.cancel_scope.cancel()
            assert len([e for e in log.events if e.type.name == "OutboundDHTQuery"]) == 1
            gauge = intro.state().subsystems.dht.outgoing_queries
            assert (gauge.success, gauge.error, gauge.timeout) == (
                gauge_before.success,
                gauge_before.error,
                gauge_before.timeout,
            )
            intro.detach()


async def test_inbound_ts_is_when_the_request_arrived_and_each_request_is_one_event() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (node, client):
            dht = KadDHT(node, DHTMode.SERVER)
            intro = HostIntrospector(node, dht=dht, clock_ms=clock)
            log = EventLog()
            intro.set_event_sink(log)
            await connect(client, node)
            stream = await client.new_stream(node.get_id(), [PROTOCOL_ID])
            wanted = client.get_id()
            find = Message(type=Message.MessageType.FIND_NODE, key=wanted.to_bytes())
            request = find.SerializeToString()
            framed = varint.encode(len(request)) + request
            received_at = clock.now
            await stream.write(framed[:3])  # the request starts arriving...

            def read_by_node() -> int:
                kad = [s for c in intro.state().subsystems.connections for s in c.streams.streams
                       if s.protocol == PROTOCOL_ID]  # fmt: skip
                return sum(s.traffic.traffic_in.cum_bytes for s in kad)

            await wait_until(lambda: read_by_node() >= 3)
            clock.advance(2_000)
            await stream.write(framed[3:])  # ...and is complete two (fake) seconds later
            assert await _read_varint(stream) > 0  # the answer starts
            # A PING on the same stream, then the client hangs up.
            ping = Message(type=Message.MessageType.PING).SerializeToString()
            await stream.write(varint.encode(len(ping)) + ping)
            await wait_until(lambda: len(log.named("InboundDHTQuery")) >= 2)
            await stream.close()
            first, second = [e for e in log.events if e.type.name == "InboundDHTQuery"]
            assert first.ts == received_at
            c1, c2 = json.loads(first.content), json.loads(second.content)
            assert (c1["messageType"], c1["type"], c1["result"]) == (
                "FIND_NODE",
                "CONTENT",
                "SUCCESS",
            )
            assert c1["targetPeerId"] == wanted.to_base58()
            assert c1["peerIds"] == [client.get_id().to_base58()]
            assert (c2["messageType"], c2["type"], c2["targetPeerId"]) == ("PING", "CONTENT", "")
            assert second.ts == clock.now
            assert intro.state().subsystems.dht.incoming_queries.success == 2
            intro.detach()


async def test_peer_staleness_follows_the_injected_clock() -> None:
    """A peer unseen for longer than py-libp2p's STALE_PEER_THRESHOLD is MISSING by the
    introspector's clock (here a fake one), not by the machine's ``time.time()``."""
    import time

    from libp2p.kad_dht.common import STALE_PEER_THRESHOLD

    clock = FakeClock(start_ms=time.time_ns() // 1_000_000)
    with trio.fail_after(45):
        async with running_hosts(2) as hosts, AsyncExitStack() as stack:
            dhts = [KadDHT(h, DHTMode.SERVER) for h in hosts]
            intro = HostIntrospector(hosts[0], dht=dhts[0], clock_ms=clock)
            await connect(hosts[0], hosts[1])
            for dht in dhts:
                await stack.enter_async_context(background_trio_service(dht))
            await dhts[0].find_peer(hosts[1].get_id())
            await wait_until(lambda: dhts[0].get_routing_table_size() >= 1)

            def statuses() -> set[int]:
                dht = intro.state().subsystems.dht
                return {p.status for b in dht.buckets for p in b.peers}

            assert statuses() == {pb.DHT.PeerInDHT.ACTIVE}
            clock.advance((STALE_PEER_THRESHOLD + 60) * 1_000)
            assert statuses() == {pb.DHT.PeerInDHT.MISSING}
            intro.detach()


# ------------------------------------------- query durations on the injected clock


class _FakeMonotonic:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_query_durations_and_timeouts_follow_the_injected_monotonic_clock() -> None:
    """TIMEOUT vs CANCELLED and ``totalTimeMs`` come from the tracker's clock, not
    ``time.monotonic()``: a fake clock decides them, whatever the machine's speed."""
    from libp2p_introspection.introspector.dht import DhtTracker
    from libp2p_introspection.introspector.dht_inbound import RequestReader
    from libp2p_introspection.introspector.patching import InstancePatcher

    fake = _FakeMonotonic()
    with trio.fail_after(30):
        async with running_hosts(1) as (node,):
            dht = KadDHT(node, DHTMode.SERVER)
            intro = HostIntrospector(node)  # its registry and emitter, no DHT tracker
            log = EventLog()
            intro.set_event_sink(log)
            patcher = InstancePatcher()
            tracker = DhtTracker(dht, patcher=patcher, clock_ms=lambda: 1_700_000_000_000,
                                 emitter=intro._events, registry=intro._registry, start_ts=0,
                                 monotonic=fake)  # fmt: skip
            tracker.attach()
            try:

                def query(advance_s: float, answer: object = None):
                    async def original(*args: object) -> object:
                        fake.now += advance_s
                        if answer is None:
                            await trio.sleep_forever()
                        return answer

                    return tracker._wrap_outbound(original, "FIND_NODE")

                peer = "QmSomePeer"
                assert await query(0.25, True)(peer, b"k") is True
                with trio.move_on_after(0):  # cancelled 9.6 s into a 10 s query: TIMEOUT
                    await query(9.6)(peer, b"k")
                with trio.move_on_after(0):  # cancelled after 1 s: CANCELLED, not reported
                    await query(1.0)(peer, b"k")
                outbound = log.named("OutboundDHTQuery")
                assert [(e["result"], e["totalTimeMs"]) for e in outbound] == [
                    ("SUCCESS", 250), ("TIMEOUT", 9600),
                ]  # fmt: skip

                reader = RequestReader(lambda: 1_700_000_000_000, 1 << 20, fake)
                reader.feed(b"\x02")  # a request's first byte: it started now
                started = fake.now
                fake.now += 0.125
                reader.feed(b"\x08\x04")
                (request,) = reader.complete
                assert request.started == started
                tracker._inbound_done("QmOther", request, "SUCCESS")
                (inbound,) = log.named("InboundDHTQuery")
                assert inbound["totalTimeMs"] == 125
            finally:
                tracker.detach()
                patcher.restore_all()
