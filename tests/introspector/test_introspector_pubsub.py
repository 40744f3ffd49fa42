"""Subsystems.pubsub and the pubsub events, on real py-libp2p hosts running gossipsub or
floodsub on loopback (PROTOCOL.md §3.1).

Every test builds a star: ``A`` (the introspected node) in the middle, ``B`` and ``C``
each connected to ``A`` only, so which copies of a message cross which link is fixed
by the routers' rules (a message is never sent back to the peer it came from nor to
its origin) and counts can be checked exactly against what was published.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from event_checks import check_events
from introspector_harness import WAIT_S, EventLog, FakeClock, connect, running_hosts, wait_until
from libp2p.pubsub.floodsub import PROTOCOL_ID as FLOODSUB_ID
from libp2p.pubsub.floodsub import FloodSub
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector import pubsub as pubsub_module
from libp2p_introspection.protocol import pb

TOPIC = "blocks"
GOSSIPSUB_PROTOCOLS = [PROTOCOL_ID_V12, PROTOCOL_ID_V11]


def b58(host: Any) -> str:
    return str(host.get_id().to_base58())


@asynccontextmanager
async def pubsub_hosts(
    n: int, router: str = "gossipsub", *, clock: FakeClock | None = None
) -> AsyncIterator[tuple[list[Any], list[Any], HostIntrospector, EventLog]]:
    """``n`` hosts, each with a running Pubsub (and router); the first one introspected
    from the start (with ``clock`` if given), its events in the returned log."""
    async with running_hosts(n) as hosts, AsyncExitStack() as stack:
        pubsubs = []
        intro: HostIntrospector | None = None
        log = EventLog()
        for index, host in enumerate(hosts):
            if router == "gossipsub":
                # The heartbeat runs once, 0.1 s after start, then every 120 s: no
                # heartbeat-driven grafts, prunes or gossip while a test runs.
                routing: Any = GossipSub(
                    GOSSIPSUB_PROTOCOLS, degree=2, degree_low=1, degree_high=3,
                    heartbeat_interval=120,
                )  # fmt: skip
            else:
                routing = FloodSub([FLOODSUB_ID])
            ps = Pubsub(host, routing)
            if index == 0:
                intro = HostIntrospector(host, pubsub=ps, clock_ms=clock)
                intro.set_event_sink(log)
                stack.callback(intro.detach)
            await stack.enter_async_context(background_trio_service(ps))
            if router == "gossipsub":
                await stack.enter_async_context(background_trio_service(routing))
            await ps.wait_until_ready()
            pubsubs.append(ps)
        assert intro is not None
        yield hosts, pubsubs, intro, log


async def star(hosts: list[Any], pubsubs: list[Any]) -> None:
    """Connect every other host to ``hosts[0]`` and wait until each pair has a pubsub stream."""
    for host in hosts[1:]:
        await connect(host, hosts[0])
    for host, ps in zip(hosts[1:], pubsubs[1:], strict=True):
        await pubsubs[0].wait_for_peer(host.get_id(), timeout=WAIT_S)
        await ps.wait_for_peer(hosts[0].get_id(), timeout=WAIT_S)


def topic_of(state: pb.State, name: str) -> pb.PubSub.Topic:
    (topic,) = [t for t in state.subsystems.pubsub.topics if t.name == name]
    return topic


async def settle() -> None:
    """Let the tasks py-libp2p spawned for what already arrived run to their next wait.

    Each subscription a peer announces spawns a replay of the router's recent messages
    to it: one that ran after a publish would send that message again (a real copy,
    counted), so counting tests publish only once those replays ran (on empty caches).
    """
    await trio.testing.wait_all_tasks_blocked()


async def receive(subscription: Any, count: int) -> list[Any]:
    with trio.fail_after(WAIT_S):
        return [await subscription.get() for _ in range(count)]


async def test_message_counts_match_what_was_published() -> None:
    """messages_in: every message A read from a peer, duplicates included; messages_out:
    every copy A wrote to a peer; both in packets and data bytes, per topic."""
    clock = FakeClock()
    with trio.fail_after(60):
        async with pubsub_hosts(3, clock=clock) as (hosts, pubsubs, intro, _):
            a, b, c = pubsubs
            subs = [await ps.subscribe(TOPIC) for ps in pubsubs]
            await star(hosts, pubsubs)
            for ps, host in ((a, hosts[1]), (a, hosts[2]), (b, hosts[0]), (c, hosts[0])):
                await ps.wait_for_mesh(host.get_id(), TOPIC, timeout=WAIT_S)
            await settle()
            first = intro.state()
            assert topic_of(first, TOPIC).messages_in.cum_packets == 0
            assert topic_of(first, TOPIC).messages_out.cum_packets == 0

            from_a = [b"a" * 10, b"a" * 300, b"a" * 7]
            from_b = [b"b" * 55, b"b" * 1000]
            for data in from_a:
                await a.publish(TOPIC, data)
            for data in from_b:
                await b.publish(TOPIC, data)
            await receive(subs[1], len(from_a))  # B: A's messages
            got_c = await receive(subs[2], len(from_a) + len(from_b))  # C: A's and B's
            got_a = await receive(subs[0], len(from_b))  # A: B's

            # A real duplicate on the wire: B writes one of its messages to A twice more.
            stream = b.peers[hosts[0].get_id()]
            duplicate = rpc_pb2.RPC(publish=[got_a[0]])
            assert await b.write_msg(stream, duplicate)
            assert await b.write_msg(stream, duplicate)
            await wait_until(lambda: _in_packets(intro) == len(from_b) + 2)

            clock.advance(2000)
            state = intro.state()
            topic = topic_of(state, TOPIC)
            # In: B's two messages, then the duplicate twice (py-libp2p drops those as seen).
            assert topic.messages_in.cum_packets == len(from_b) + 2
            in_bytes = sum(map(len, from_b)) + 2 * len(got_a[0].data)
            assert topic.messages_in.cum_bytes == in_bytes
            # Out: each of A's messages to B and to C, each of B's forwarded to C only.
            assert topic.messages_out.cum_packets == 2 * len(from_a) + len(from_b)
            out_bytes = 2 * sum(map(len, from_a)) + sum(map(len, from_b))
            assert topic.messages_out.cum_bytes == out_bytes
            # inst_bw: bytes per second over the 2 s window since the previous snapshot.
            assert state.snapshot_duration_ms == 2000
            assert topic.messages_in.inst_bw == in_bytes * 1000 // 2000
            assert topic.messages_out.inst_bw == out_bytes * 1000 // 2000
            assert sorted(m.data for m in got_c) == sorted(from_a + from_b)

            clock.advance(1000)
            quiet = topic_of(intro.state(), TOPIC)
            assert quiet.messages_out.cum_bytes == out_bytes  # cumulative: kept
            assert quiet.messages_in.inst_bw == quiet.messages_out.inst_bw == 0


def _in_packets(intro: HostIntrospector) -> int:
    return sum(t.messages_in.cum_packets for t in intro.state().subsystems.pubsub.topics)


async def test_topics_mesh_fanout_and_peers() -> None:
    """Topics ours or not, with mesh, fanout and known subscribers; peers with the
    protocol they speak, gossipsub's score and their topics."""
    with trio.fail_after(60):
        async with pubsub_hosts(3) as (hosts, pubsubs, intro, _):
            a, b, c = pubsubs
            await a.subscribe(TOPIC)
            await b.subscribe(TOPIC)
            await b.subscribe("only-b")
            sub_c = await c.subscribe("only-c")
            await star(hosts, pubsubs)
            await a.wait_for_mesh(hosts[1].get_id(), TOPIC, timeout=WAIT_S)
            await a.wait_for_subscription(hosts[2].get_id(), "only-c", timeout=WAIT_S)
            await a.wait_for_subscription(hosts[1].get_id(), "only-b", timeout=WAIT_S)
            await settle()
            await a.publish("only-c", b"to a topic we are not subscribed to")  # fanout
            await receive(sub_c, 1)

            state = intro.state()
            assert state.subsystems.HasField("pubsub")
            ps = state.subsystems.pubsub
            assert ps.router == PROTOCOL_ID_V12
            names = [t.name for t in ps.topics]
            assert names == sorted([TOPIC, "only-b", "only-c"])
            ours = topic_of(state, TOPIC)
            assert ours.subscribed
            assert list(ours.mesh_peers) == [b58(hosts[1])]
            assert list(ours.peers) == [b58(hosts[1])]
            assert list(ours.fanout_peers) == []
            fanout = topic_of(state, "only-c")
            assert not fanout.subscribed
            assert list(fanout.mesh_peers) == []
            assert list(fanout.fanout_peers) == list(fanout.peers) == [b58(hosts[2])]
            assert fanout.messages_out.cum_packets == 1
            theirs = topic_of(state, "only-b")
            assert not theirs.subscribed and list(theirs.peers) == [b58(hosts[1])]

            peers = {p.peer_id: p for p in ps.peers}
            assert set(peers) == {b58(hosts[1]), b58(hosts[2])}
            assert peers[b58(hosts[1])].protocol == PROTOCOL_ID_V12
            assert list(peers[b58(hosts[1])].topics) == sorted([TOPIC, "only-b"])
            assert list(peers[b58(hosts[2])].topics) == ["only-c"]
            scorer = a.router.scorer
            assert peers[b58(hosts[1])].score == scorer.score(hosts[1].get_id(), [TOPIC])
            assert peers[b58(hosts[2])].score == scorer.score(hosts[2].get_id(), [])


async def test_subscription_graft_and_prune_events() -> None:
    """Subscriptions (ours and peers'), grafts when the mesh forms, prunes the peer asked
    for (INBOUND) and the ones we sent when leaving the topic (OUTBOUND)."""
    with trio.fail_after(60):
        async with pubsub_hosts(3) as (hosts, pubsubs, intro, log):
            a, b, _ = pubsubs
            me, peer_b, peer_c = b58(hosts[0]), b58(hosts[1]), b58(hosts[2])
            for ps in pubsubs:
                await ps.subscribe(TOPIC)
            await star(hosts, pubsubs)
            await wait_until(lambda: len(log.named("PubsubGraft")) >= 2)
            await wait_until(lambda: len(log.named("PubsubSubscriptionChanged")) >= 3)

            subscriptions = log.named("PubsubSubscriptionChanged")
            assert sorted((e["peerId"], e["topic"], e["subscribed"]) for e in subscriptions) == [
                (p, TOPIC, True) for p in sorted([me, peer_b, peer_c])
            ]
            grafts = log.named("PubsubGraft")
            # One graft per peer: whoever sent the GRAFT first (the other one is a no-op).
            assert sorted((e["peerId"], e["topic"]) for e in grafts) == sorted(
                [(peer_b, TOPIC), (peer_c, TOPIC)]
            )
            assert {e["direction"] for e in grafts} <= {"INBOUND", "OUTBOUND"}
            assert sorted(topic_of(intro.state(), TOPIC).mesh_peers) == sorted([peer_b, peer_c])

            await b.unsubscribe(TOPIC)  # B announces it, then PRUNEs A
            await wait_until(lambda: len(log.named("PubsubPrune")) == 1)
            await wait_until(lambda: len(log.named("PubsubSubscriptionChanged")) == 4)
            assert log.named("PubsubPrune") == [
                {"peerId": peer_b, "topic": TOPIC, "direction": "INBOUND"}
            ]
            assert log.named("PubsubSubscriptionChanged")[-1] == {
                "peerId": peer_b, "topic": TOPIC, "subscribed": False,
            }  # fmt: skip

            await a.unsubscribe(TOPIC)  # we PRUNE C and leave the topic
            assert log.named("PubsubPrune")[1:] == [
                {"peerId": peer_c, "topic": TOPIC, "direction": "OUTBOUND"}
            ]
            assert log.named("PubsubSubscriptionChanged")[-1] == {
                "peerId": me, "topic": TOPIC, "subscribed": False,
            }  # fmt: skip
            state = intro.state()
            topic = topic_of(state, TOPIC)
            assert not topic.subscribed and list(topic.mesh_peers) == []
            assert list(topic.peers) == [peer_c]
            assert len(log.named("PubsubGraft")) == 2  # nothing else changed the mesh
            # Every event is declared and its content has the declared keys and types.
            check_events(intro.runtime(), log.events)


async def test_floodsub() -> None:
    """A floodsub router: its protocol, no mesh, score 0, no graft or prune."""
    with trio.fail_after(60):
        async with pubsub_hosts(3, "floodsub") as (hosts, pubsubs, intro, log):
            a, b, c = pubsubs
            subs = [await ps.subscribe(TOPIC) for ps in pubsubs]
            await star(hosts, pubsubs)
            for host in hosts[1:]:
                await a.wait_for_subscription(host.get_id(), TOPIC, timeout=WAIT_S)
            await b.wait_for_subscription(hosts[0].get_id(), TOPIC, timeout=WAIT_S)
            await c.wait_for_subscription(hosts[0].get_id(), TOPIC, timeout=WAIT_S)
            await settle()
            await a.publish(TOPIC, b"x" * 40)
            await b.publish(TOPIC, b"y" * 9)
            await receive(subs[1], 1)
            await receive(subs[2], 2)
            await receive(subs[0], 1)

            ps = intro.state().subsystems.pubsub
            assert ps.router == FLOODSUB_ID
            (topic,) = ps.topics
            assert topic.subscribed and list(topic.mesh_peers) == list(topic.fanout_peers) == []
            assert sorted(topic.peers) == sorted([b58(hosts[1]), b58(hosts[2])])
            assert (topic.messages_in.cum_packets, topic.messages_in.cum_bytes) == (1, 9)
            assert (topic.messages_out.cum_packets, topic.messages_out.cum_bytes) == (3, 89)
            assert {(p.protocol, p.score, tuple(p.topics)) for p in ps.peers} == {
                (FLOODSUB_ID, 0.0, (TOPIC,))
            }
            assert log.named("PubsubGraft") == log.named("PubsubPrune") == []
            assert len(log.named("PubsubSubscriptionChanged")) == 3


async def test_no_pubsub_no_extension_and_detach_restores() -> None:
    """Without a Pubsub the extension is absent and no pubsub event type is declared;
    with one, they are; detach removes every wrapper from the Pubsub and its router."""
    pubsub_events = {"PubsubSubscriptionChanged", "PubsubGraft", "PubsubPrune"}
    with trio.fail_after(60):
        async with running_hosts(1) as (host,):
            plain = HostIntrospector(host)
            assert not plain.state().subsystems.HasField("pubsub")
            assert not pubsub_events & {t.name for t in plain.runtime().event_types}
            plain.detach()
        async with pubsub_hosts(1) as (_, (ps,), intro, _):
            declared = {t.name: t for t in intro.runtime().event_types}
            assert pubsub_events <= set(declared)
            assert {p.name for p in declared["PubsubGraft"].property_types} == {
                "peerId", "topic", "direction",
            }  # fmt: skip
            state = intro.state()
            assert state.subsystems.HasField("pubsub")  # a router with no topics: present
            assert list(state.subsystems.pubsub.topics) == []
            hooked = {"_is_subscribed_to_msg", "write_msg", "handle_subscription", "subscribe"}
            assert hooked <= set(vars(ps))
            assert {"emit_control_message", "handle_graft", "leave"} <= set(vars(ps.router))
            intro.detach()
            assert not hooked & set(vars(ps))
            assert not {"emit_control_message", "handle_graft", "leave"} & set(vars(ps.router))


async def test_messages_on_unlisted_topics_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer naming many topics nobody subscribed to cannot grow the topic table
    past MAX_UNLISTED_TOPICS; nothing breaks, listed topics are still counted."""
    monkeypatch.setattr(pubsub_module, "MAX_UNLISTED_TOPICS", 5)
    with trio.fail_after(60):
        async with pubsub_hosts(2) as (hosts, pubsubs, intro, _):
            a, b = pubsubs
            sub = await a.subscribe(TOPIC)
            await b.subscribe(TOPIC)
            await star(hosts, pubsubs)
            await a.wait_for_mesh(hosts[1].get_id(), TOPIC, timeout=WAIT_S)
            await settle()
            spray = rpc_pb2.RPC(
                publish=[rpc_pb2.Message(data=b"z", topicIDs=[f"junk-{i}"]) for i in range(20)]
            )
            assert await b.write_msg(b.peers[hosts[0].get_id()], spray)
            await b.publish(TOPIC, b"real")
            await receive(sub, 1)
            topics = {t.name: t for t in intro.state().subsystems.pubsub.topics}
            junk = [name for name in topics if name.startswith("junk-")]
            assert junk == [f"junk-{i}" for i in range(5)]
            assert all(topics[name].messages_in.cum_packets == 1 for name in junk)
            assert topics[TOPIC].messages_in.cum_packets == 1
