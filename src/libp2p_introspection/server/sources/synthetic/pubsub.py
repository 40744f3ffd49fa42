"""The simulated node's gossipsub router: topics, meshes, fanout, peers, scores, messages.

``/meshsub/1.1.0`` with D=8 (D_lo 6, D_hi 12) and a fanout of 6. Topics are
named like Ethereum's consensus topics. We subscribe to the first 80% of them
and publish to every other one of the rest (through a fanout). Every peer whose
agent speaks gossipsub (:class:`~.node.Agent`) is a pubsub peer for as long as
its connection is ACTIVE, subscribed to one to four topics (popular ones more
often). Per snapshot, in this order, each change with its event stamped with
the snapshot's time:

* peers that connected subscribe (``PubsubSubscriptionChanged``, at most
  ``max_subscription_events`` per snapshot: the rest are counted in
  :attr:`SimPubsub.suppressed_events`); peers whose connection closed leave every
  topic, mesh and fanout silently (a disconnect exchanges no message);
* now and then a peer subscribes to one more topic or leaves one;
* each mesh below D_lo is grafted up to D (``PubsubGraft`` OUTBOUND, peers with
  a score of 0 or more), a few peers ask to join a mesh below D_hi (INBOUND) and
  a few meshes above D_lo lose a peer (``PubsubPrune``: OUTBOUND when we prune the
  lowest scored, INBOUND when the peer leaves); fanouts are refilled silently;
* a few scores drift; messages arrive and leave at each topic's rate.

Messages: ``messages_in`` counts every message received, duplicates included
(about 0.6 copies per mesh peer of each message), ``messages_out`` every copy we
sent (forwarded to the mesh, or published to the fanout); bytes are data bytes,
``inst_bw`` bytes per second over the snapshot window. They are not derived from
the bytes of the ``/meshsub`` streams (simulated on their own).
"""

from __future__ import annotations

import math
import random
from typing import Any

from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter
from libp2p_introspection.protocol.framing import encode_varint

ROUTER = "/meshsub/1.1.0"
D, D_LO, D_HI = 8, 6, 12
FANOUT_D = 6
#: Share of the topics we subscribe to.
SUBSCRIBED_SHARE = 0.8
#: Topic names: the fixed ones first, then attestation subnets, then sync committees.
_FORK = "6a95a1a9"
_FIXED = ("beacon_block", "beacon_aggregate_and_proof", "voluntary_exit", "proposer_slashing",
          "attester_slashing", "sync_committee_contribution_and_proof",
          "bls_to_execution_change", "blob_sidecar_0", "blob_sidecar_1",
          "blob_sidecar_2")  # fmt: skip

_TOPICS_TAG, _PEERS_TAG, _ROUTER_TAG = b"\x12", b"\x1a", b"\x0a"


def topic_names(count: int) -> list[str]:
    """``count`` distinct topic names, ``/eth2/<fork>/<name>/ssz_snappy``."""
    names = list(_FIXED[:count])
    index = 0
    while len(names) < count:
        name = f"beacon_attestation_{index}" if index < 64 else f"sync_committee_{index - 64}"
        names.append(name)
        index += 1
    return [f"/eth2/{_FORK}/{name}/ssz_snappy" for name in names]


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + encode_varint(len(data)) + data


class SimPubsubPeer:
    """One peer of the router: its protocol, score, topics (indexes) and cached bytes."""

    __slots__ = ("_bytes", "peer_id", "protocol", "score", "topics")

    def __init__(self, peer_id: str, protocol: str, score: float, topics: list[int]) -> None:
        self.peer_id = peer_id
        self.protocol = protocol
        self.score = score
        self.topics = topics
        self._bytes: bytes | None = None

    def changed(self) -> None:
        self._bytes = None

    def encoded(self, names: list[str]) -> bytes:
        """Its ``PubSubPeer``, serialized (kept until it changes)."""
        if self._bytes is None:
            self._bytes = pb.PubSubPeer(
                peer_id=self.peer_id, protocol=self.protocol, score=self.score,
                topics=[names[i] for i in self.topics],
            ).SerializeToString()  # fmt: skip
        return self._bytes



def _topic_message(name: str, subscribed: bool) -> Any:
    """A topic's ``pb.PubSub.Topic`` with its message gauges present (counts 0)."""
    msg = pb.PubSub.Topic(name=name, subscribed=subscribed)
    msg.messages_in.SetInParent()
    msg.messages_out.SetInParent()
    return msg

class SimTopic:
    """One topic: who is subscribed, our mesh or fanout, its message counters."""

    __slots__ = ("dirty", "fanout", "in_bytes", "in_msgs", "mesh", "msg", "name", "out_bytes",
                 "out_msgs", "peers", "prev_in", "prev_out", "publishing", "rate", "size",
                 "subscribed")  # fmt: skip

    def __init__(self, name: str, subscribed: bool, publishing: bool, rate: float, size: int):
        self.name = name
        self.subscribed = subscribed
        self.publishing = publishing
        self.rate = rate  # messages per second on the whole topic
        self.size = size  # data bytes per message
        self.peers: dict[str, None] = {}
        self.mesh: dict[str, None] = {}
        self.fanout: dict[str, None] = {}
        self.in_msgs = self.in_bytes = self.out_msgs = self.out_bytes = 0
        self.prev_in = self.prev_out = 0
        self.dirty = True
        self.msg = _topic_message(name, subscribed)


class SimPubsub:
    """The router (see the module docstring).

    :param rng: its own generator (its evolution draws from nothing else).
    :param emitter: where its events go.
    :param max_subscription_events: ``PubsubSubscriptionChanged`` events per snapshot.
    """

    def __init__(
        self, topics: int, *, rng: random.Random, emitter: EventEmitter,
        max_subscription_events: int = 20,
    ) -> None:  # fmt: skip
        self._rng = rng
        self._emitter = emitter
        self._budget_per_step = max_subscription_events
        self._budget = max_subscription_events
        self.names = topic_names(topics)
        subscribed = math.ceil(SUBSCRIBED_SHARE * topics)
        self.topics = []
        for index, name in enumerate(self.names):
            if index == 0:  # beacon blocks: rare and big
                rate, size = 1 / 12, rng.randrange(40_000, 90_000)
            else:
                rate, size = 3.0 / (1 + 0.25 * index), rng.randrange(200, 4_000)
            ours = index < subscribed
            self.topics.append(SimTopic(name, ours, not ours and index % 2 == 0, rate, size))
        self._weights = [1 / (1 + i) for i in range(topics)]
        self.peers: dict[str, SimPubsubPeer] = {}
        #: Subscription events not emitted for the per-snapshot limit.
        self.suppressed_events = 0
        self._head = _field(_ROUTER_TAG, ROUTER.encode())

    # ---------------------------------------------------------------- membership

    def join(self, peer_id: str, protocol: str, now: int, *, announce: bool) -> SimPubsubPeer:
        """A peer connected: it subscribes to its topics (events when ``announce``)."""
        rng = self._rng
        count = min(len(self.topics), 1 + min(3, int(rng.expovariate(0.9))))
        chosen: list[int] = []
        for _ in range(20):
            if len(chosen) >= count:
                break
            index = rng.choices(range(len(self.topics)), self._weights)[0]
            if index not in chosen:
                chosen.append(index)
        score = -rng.uniform(5, 80) if rng.random() < 0.03 else max(0.0, rng.gauss(6, 3))
        peer = SimPubsubPeer(peer_id, protocol, round(score, 3), sorted(chosen))
        self.peers[peer_id] = peer
        for index in peer.topics:
            topic = self.topics[index]
            topic.peers[peer_id] = None
            topic.dirty = True
            if announce:
                self._subscription(peer_id, topic, True, now)
        return peer

    def leave(self, peer: SimPubsubPeer) -> None:
        """A peer's connection closed: it goes from every topic, mesh and fanout."""
        self.peers.pop(peer.peer_id, None)
        for index in peer.topics:
            topic = self.topics[index]
            topic.peers.pop(peer.peer_id, None)
            topic.mesh.pop(peer.peer_id, None)
            topic.fanout.pop(peer.peer_id, None)
            topic.dirty = True

    def _subscription(self, peer_id: str, topic: SimTopic, subscribed: bool, now: int) -> None:
        if self._budget <= 0:
            self.suppressed_events += 1
            return
        self._budget -= 1
        content = {"peerId": peer_id, "topic": topic.name, "subscribed": subscribed}
        self._emitter.emit(events.PUBSUB_SUBSCRIPTION_CHANGED, content, ts=now)

    def _mesh_change(self, spec: Any, peer_id: str, topic: SimTopic, direction: str, now: int):
        content = {"peerId": peer_id, "topic": topic.name, "direction": direction}
        self._emitter.emit(spec, content, ts=now)

    # --------------------------------------------------------------------- steps

    def settle(self) -> None:
        """Fill every mesh to D and every fanout to its size, with no events (the state
        the router is in when introspection starts)."""
        for topic in self.topics:
            self._heal(topic, 0, announce=False)

    def start_step(self) -> None:
        """A new snapshot: its subscription events may be emitted again."""
        self._budget = self._budget_per_step

    def step(self, now: int, window_ms: int) -> None:
        """The rest of one snapshot's changes (see the module docstring)."""
        rng = self._rng
        if self.peers and rng.random() < 0.5:
            self._toggle_subscription(now)
        for topic in self.topics:
            self._heal(topic, now, announce=True)
            if topic.subscribed:
                roll = rng.random()
                if roll < 0.06 and len(topic.mesh) < D_HI:
                    candidates = self._candidates(topic)
                    if candidates:
                        peer_id = candidates[rng.randrange(len(candidates))]
                        self._graft(topic, peer_id, "INBOUND", now)
                elif roll < 0.14 and len(topic.mesh) > D_LO:
                    if rng.random() < 0.5:
                        peer_id = min(topic.mesh, key=lambda p: self.peers[p].score)
                        self._prune(topic, peer_id, "OUTBOUND", now)
                    else:
                        mesh = list(topic.mesh)
                        self._prune(topic, mesh[rng.randrange(len(mesh))], "INBOUND", now)
        if self.peers:
            ids = list(self.peers)
            for _ in range(min(5, len(ids))):
                peer = self.peers[ids[rng.randrange(len(ids))]]
                peer.score = round(peer.score + rng.gauss(0, 0.5), 3)
                peer.changed()
        self._messages(window_ms)

    def _candidates(self, topic: SimTopic) -> list[str]:
        peers = self.peers
        return [p for p in topic.peers if p not in topic.mesh and peers[p].score >= 0]

    def _graft(self, topic: SimTopic, peer_id: str, direction: str, now: int) -> None:
        topic.mesh[peer_id] = None
        topic.dirty = True
        self._mesh_change(events.PUBSUB_GRAFT, peer_id, topic, direction, now)

    def _prune(self, topic: SimTopic, peer_id: str, direction: str, now: int) -> None:
        del topic.mesh[peer_id]
        topic.dirty = True
        self._mesh_change(events.PUBSUB_PRUNE, peer_id, topic, direction, now)

    def _heal(self, topic: SimTopic, now: int, *, announce: bool) -> None:
        rng = self._rng
        if topic.subscribed:
            if len(topic.mesh) < (D if not announce else D_LO):
                candidates = self._candidates(topic)
                rng.shuffle(candidates)
                for peer_id in candidates[: D - len(topic.mesh)]:
                    if announce:
                        self._graft(topic, peer_id, "OUTBOUND", now)
                    else:
                        topic.mesh[peer_id] = None
                topic.dirty = True
            while len(topic.mesh) > D_HI:
                self._prune(topic, next(iter(topic.mesh)), "OUTBOUND", now)
        elif topic.publishing and len(topic.fanout) < FANOUT_D:
            candidates = [p for p in topic.peers if p not in topic.fanout]
            rng.shuffle(candidates)
            for peer_id in candidates[: FANOUT_D - len(topic.fanout)]:
                topic.fanout[peer_id] = None
            topic.dirty = True

    def _toggle_subscription(self, now: int) -> None:
        rng = self._rng
        ids = list(self.peers)
        peer = self.peers[ids[rng.randrange(len(ids))]]
        if len(peer.topics) > 1 and rng.random() < 0.5:
            index = peer.topics.pop(rng.randrange(len(peer.topics)))
            topic = self.topics[index]
            topic.peers.pop(peer.peer_id, None)
            topic.mesh.pop(peer.peer_id, None)
            topic.fanout.pop(peer.peer_id, None)
            subscribed = False
        else:
            free = [i for i in range(len(self.topics)) if i not in peer.topics]
            if not free:
                return
            index = free[rng.randrange(len(free))]
            peer.topics.append(index)
            peer.topics.sort()
            topic = self.topics[index]
            topic.peers[peer.peer_id] = None
            subscribed = True
        topic.dirty = True
        peer.changed()
        self._subscription(peer.peer_id, topic, subscribed, now)

    def _messages(self, window_ms: int) -> None:
        if not window_ms:
            return
        rand = self._rng.random
        seconds = window_ms / 1000.0
        for topic in self.topics:
            if topic.subscribed:
                degree = len(topic.mesh)
                rate_in = topic.rate * max(1.0, 0.6 * degree) if topic.peers else 0.0
                rate_out = topic.rate * 0.6 * max(0, degree - 1)
            else:
                rate_in = 0.0
                rate_out = 0.2 * len(topic.fanout) if topic.publishing else 0.0
            r = rand()
            n_in = int(rate_in * seconds * (0.5 + r) + rand())
            n_out = int(rate_out * seconds * (0.5 + rand()) + rand())
            topic.in_msgs += n_in
            topic.in_bytes += n_in * topic.size + (int(r * topic.size) if n_in else 0)
            topic.out_msgs += n_out
            topic.out_bytes += n_out * topic.size

    # -------------------------------------------------------------------- output

    def encoded(self, window_ms: int) -> bytes:
        """``PubSub``, serialized: the router, every topic it knows, every peer."""
        parts = [self._head]
        append = parts.append
        for topic in self.topics:
            msg = topic.msg
            if topic.dirty:
                # A new message, not its lists cleared and refilled: a protobuf (upb)
                # message never gives back the memory of what is deleted from it, so
                # the topic's message grew by its peer ids at every change.
                msg = topic.msg = _topic_message(topic.name, topic.subscribed)
                msg.mesh_peers.extend(topic.mesh)
                msg.fanout_peers.extend(topic.fanout)
                msg.peers.extend(topic.peers)
                topic.dirty = False
            gin, gout = msg.messages_in, msg.messages_out
            gin.cum_packets, gin.cum_bytes = topic.in_msgs, topic.in_bytes
            gout.cum_packets, gout.cum_bytes = topic.out_msgs, topic.out_bytes
            if window_ms:
                gin.inst_bw = (topic.in_bytes - topic.prev_in) * 1000 // window_ms
                gout.inst_bw = (topic.out_bytes - topic.prev_out) * 1000 // window_ms
                topic.prev_in, topic.prev_out = topic.in_bytes, topic.out_bytes
            append(_field(_TOPICS_TAG, msg.SerializeToString()))
        names = self.names
        for peer in self.peers.values():
            append(_field(_PEERS_TAG, peer.encoded(names)))
        return b"".join(parts)
