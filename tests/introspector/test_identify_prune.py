"""``IdentifyTracker.prune`` following the registry's releases: what it forgets, and
that on a node where nothing left it does not walk the records (once per snapshot, every
connection: the cost the incremental snapshot avoids)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.peer.id import ID

from libp2p_introspection.introspector.identify import IdentifyTracker
from libp2p_introspection.introspector.records import ConnectionRecord
from libp2p_introspection.introspector.traffic import TrafficCounter
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter

START_MS = 1_700_000_000_000


class Peerstore:
    """What the tracker asks of a peerstore: whether it still knows a peer."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def has_peer(self, peer_id: ID) -> bool:
        return peer_id.to_base58() in self.known


class NoWalk:
    """Records a prune must not read (``iter`` fails the test)."""

    def __iter__(self) -> Iterator[ConnectionRecord]:
        raise AssertionError("prune walked the records although nothing left")


def peer() -> str:
    return ID.from_pubkey(create_new_key_pair().public_key).to_base58()


def record(n: int, peer_id: str) -> ConnectionRecord:
    return ConnectionRecord(
        id=bytes([n]) * 4, conn=None, raw=None, peer_id=peer_id, role=pb.INITIATOR,
        transport=b"tcp", local_addr="/ip4/10.0.0.1/tcp/4001",
        remote_addr=f"/ip4/10.0.0.{n}/tcp/4001", muxer="/yamux/1.0.0", security="/noise",
        open_ts=START_MS, upgraded_ts=START_MS, traffic=TrafficCounter(), latency_ns=0,
    )  # fmt: skip


def tracker(peerstore: Any = None) -> tuple[IdentifyTracker, list[Any]]:
    emitter = EventEmitter(lambda: START_MS, events.CONNECTION_EVENTS + events.NODE_EVENTS)
    identify = IdentifyTracker(emitter, peerstore)
    released: list[Any] = []
    identify.follow_releases(released)
    identify.attach([])
    return identify, released


def identified(identify: IdentifyTracker, conn: ConnectionRecord, agent: str) -> None:
    message = Identify(agent_version=agent, observed_addr=b"")
    identify._received(conn, message.SerializeToString())


def release(released: list[Any], conn: ConnectionRecord) -> None:
    for listener in released:
        listener(conn)


def test_prune_forgets_a_peer_once_its_last_connection_left_and_not_before() -> None:
    identify, released = tracker()
    a, b = peer(), peer()
    first, second, third = record(1, a), record(2, a), record(3, b)
    for conn, agent in ((first, "a/1"), (third, "b/1")):
        identified(identify, conn, agent)
    identify.prune([first, second, third])
    assert set(identify.peer_fields) == {a, b}
    release(released, first)  # peer a still has a connection
    identify.prune([second, third])
    assert set(identify.peer_fields) == {a, b}
    release(released, third)
    identify.prune([second])
    assert set(identify.peer_fields) == {a}
    release(released, second)
    identify.prune([])
    assert identify.peer_fields == {}


def test_a_stable_node_s_prune_does_not_walk_its_records() -> None:
    identify, _released = tracker()
    a = peer()
    conn = record(1, a)
    identified(identify, conn, "a/1")
    identify.prune([conn])  # the peer was just learnt: a walk
    for _ in range(3):  # nothing left, nothing learnt: nothing to forget
        identify.prune(NoWalk())
    assert set(identify.peer_fields) == {a}
    identified(identify, conn, "a/2")  # learnt again: the next prune walks
    identify.prune([conn])
    identify.prune(NoWalk())
    assert identify.peer_fields[a] == pb.Connection(peer=identify._peers[a][1]).SerializeToString()


def test_a_peer_kept_for_the_peerstore_is_forgotten_once_the_peerstore_drops_it() -> None:
    peerstore = Peerstore()
    identify, released = tracker(peerstore)
    a = peer()
    conn = record(1, a)
    identified(identify, conn, "a/1")
    peerstore.known.add(a)
    release(released, conn)
    identify.prune([])
    assert set(identify.peer_fields) == {a}  # the peerstore still knows it
    identify.prune([])
    assert set(identify.peer_fields) == {a}
    peerstore.known.clear()  # no connection left in between: the prune still looks
    identify.prune([])
    assert identify.peer_fields == {}
