"""Pubsub introspection for a py-libp2p ``Pubsub`` running FloodSub or GossipSub.

py-libp2p's pubsub is not reachable from the host (the host only holds its
stream handler), so the application hands its ``Pubsub`` object to the
introspector. Everything comes from that object, its router and a few
instance-level wrappers (restored on detach); see
:mod:`~libp2p_introspection.introspector.touchpoints` for each internal.

Read at snapshot time (``Subsystems.pubsub``, PROTOCOL.md §3.1):

* ``router``: the first protocol of ``router.get_protocols()`` (the one the
  router prefers, e.g. ``/meshsub/1.2.0``, ``/floodsub/1.0.0``);
* topics: every topic the router knows, ours or not: the keys of
  ``router.mesh`` (topics we joined), ``router.fanout`` (GossipSub: topics we
  publish to without being subscribed), ``Pubsub.peer_topics`` (topics peers
  announced), ``Pubsub.topic_ids`` (our subscriptions), and every topic whose
  message counters are not zero (so counters never disappear). ``subscribed``
  is ``topic in Pubsub.topic_ids``; ``mesh_peers`` / ``fanout_peers`` are
  ``router.mesh[topic]`` / ``router.fanout[topic]``; ``peers``
  ``Pubsub.peer_topics[topic]``, all base58, sorted;
* peers: every peer the router has a protocol for (``router.peer_protocol``,
  peers with a pubsub stream) or that is known subscribed to a topic;
  ``protocol`` from ``router.peer_protocol`` ("" while unknown); ``score`` is
  GossipSub's ``router.scorer.score(peer, topics)`` over the topics of our
  mesh the peer is in (0 for FloodSub, which has no scorer); ``topics`` the
  topics it is known subscribed to.

Counted by wrappers (``messages_in`` / ``messages_out``, ``DataGauge``):

* in: ``Pubsub._is_subscribed_to_msg(msg)``, which py-libp2p calls once for
  every message of every RPC it read from a peer (duplicates included,
  before it drops the ones for topics we are not subscribed to). A message
  counts one packet and ``len(msg.data)`` bytes in each of its topics. RPCs
  py-libp2p rejects before looking at their messages (an invalid signed
  peer record) are not counted;
* out: ``Pubsub.write_msg(stream, rpc)``, through which py-libp2p writes every
  RPC to a peer (its send queues, pending-message flushes and replays of
  recent messages); when it returns True each message of the RPC counts one
  packet (one copy sent to that peer) and its data bytes, in each topic.
* ``inst_bw``: bytes per second over the snapshot window.

Topics only peers' messages name (no subscription anywhere) are counted for
at most :data:`MAX_UNLISTED_TOPICS` topics, so a peer spraying random topic
names cannot grow the introspector's memory; messages on topics beyond that are
not counted (a warning is logged once).

Events:

* ``PubsubSubscriptionChanged``: a peer's subscription changed
  (``Pubsub.handle_subscription``, when ``peer_topics`` changed), or ours
  (``Pubsub.subscribe`` / ``unsubscribe``; any change they missed is found at
  the next snapshot), with our own peer id. A peer forgotten because its
  pubsub stream died did not unsubscribe: no event, the next snapshot shows it.
* ``PubsubGraft`` / ``PubsubPrune`` (GossipSub): a change of our mesh.
  OUTBOUND: a GRAFT or PRUNE we sent (``GossipSub.emit_control_message``,
  which every one goes through) for a peer that joined / left
  ``router.mesh[topic]``, or the topics we left (``GossipSub.leave``, which
  drops the mesh after its PRUNEs went out). INBOUND: a GRAFT or PRUNE the
  peer sent (``handle_graft`` / ``handle_prune``) that changed our mesh. A
  GRAFT we refused (answered with a PRUNE) changes nothing and emits
  nothing; a peer dropped from the mesh because its stream died
  (``remove_peer``) left without a PRUNE: no event. The introspector keeps a
  copy of the mesh as of its last event; a difference no hook explained is
  taken into that copy silently at the next snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.traffic import TrafficCounter, fill_gauge
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter

logger = logging.getLogger(__name__)

#: Most topics counted that py-libp2p itself does not list (no mesh, fanout or
#: subscription names them): topics only named by messages peers sent.
MAX_UNLISTED_TOPICS = 256


def _peer_str(peer_id: Any) -> str:
    try:
        return str(peer_id.to_base58())
    except Exception:
        return str(peer_id)


class PubsubTracker:
    """Observes one py-libp2p ``Pubsub`` and its router (FloodSub or GossipSub).

    :param pubsub: a ``libp2p.pubsub.pubsub.Pubsub``.
    :param patcher: the introspector's patcher (restores every wrapper on detach).
    :param emitter: where the pubsub events go.
    :param local_peer: our peer id, base58 (the ``peerId`` of our own subscriptions).
    """

    def __init__(
        self,
        pubsub: Any,
        *,
        patcher: InstancePatcher,
        emitter: EventEmitter,
        local_peer: str,
    ) -> None:
        self._pubsub = pubsub
        self._router = tp.PUBSUB_ROUTER.get(pubsub)
        self._patcher = patcher
        self._emitter = emitter
        self._local_peer = local_peer
        self._active = False
        #: topic -> counter: ``in_*`` messages received, ``out_*`` copies sent.
        self._counts: dict[str, TrafficCounter] = {}
        self._unlisted = 0
        self._warned_unlisted = False
        #: Our subscriptions as of the last event about them.
        self._ours: set[str] = set()
        #: Our mesh as of the last graft/prune event: topic -> peer ids.
        self._mesh: dict[str, set[Any]] = {}
        #: (topic, peer) pairs a peer's GRAFT/PRUNE handler is working on.
        self._inbound: set[tuple[str, Any]] = set()

    # ------------------------------------------------------------- attaching

    def attach(self) -> None:
        """Install the wrappers; our subscriptions and mesh as they are now are the baseline."""
        pubsub, router, patcher = self._pubsub, self._router, self._patcher
        self._active = True
        self._ours = set(self._topic_ids())
        self._mesh = {topic: set(peers) for topic, peers in self._router_map("mesh").items()}
        tp.PUBSUB_IS_SUBSCRIBED_TO_MSG.hook(patcher, pubsub, self._wrap_received)
        tp.PUBSUB_WRITE_MSG.hook(patcher, pubsub, self._wrap_write)
        tp.PUBSUB_HANDLE_SUBSCRIPTION.hook(patcher, pubsub, self._wrap_handle_subscription)
        tp.PUBSUB_SUBSCRIBE.hook(patcher, pubsub, self._wrap_own_subscription)
        tp.PUBSUB_UNSUBSCRIBE.hook(patcher, pubsub, self._wrap_own_subscription)
        if router is None:
            return
        tp.GOSSIPSUB_EMIT_CONTROL.hook(patcher, router, self._wrap_emit_control)
        tp.GOSSIPSUB_HANDLE_GRAFT.hook(patcher, router, self._wrap_inbound_control)
        tp.GOSSIPSUB_HANDLE_PRUNE.hook(patcher, router, self._wrap_inbound_control)
        tp.GOSSIPSUB_LEAVE.hook(patcher, router, self._wrap_leave)
        tp.GOSSIPSUB_REMOVE_PEER.hook(patcher, router, self._wrap_remove_peer)

    def detach(self) -> None:
        """Stop observing (the wrappers are restored by the shared patcher)."""
        self._active = False

    # ------------------------------------------------------- py-libp2p state

    def _router_map(self, name: str) -> dict[str, set[Any]]:
        """``router.mesh`` or ``router.fanout`` (interface attributes; FloodSub has no
        fanout), ``{}`` when absent."""
        value = getattr(self._router, name, None)
        return value if isinstance(value, dict) else {}

    def _peer_topics(self) -> dict[str, set[Any]]:
        value = tp.PUBSUB_PEER_TOPICS.get(self._pubsub, {})
        return value if isinstance(value, dict) else {}

    def _topic_ids(self) -> Iterable[str]:
        try:
            return list(self._pubsub.topic_ids)
        except Exception:
            return ()

    def _listed(self, topic: str) -> bool:
        """Whether py-libp2p lists ``topic`` anywhere (mesh, fanout, subscriptions)."""
        return (
            topic in self._router_map("mesh")
            or topic in self._router_map("fanout")
            or topic in self._peer_topics()
            or topic in self._topic_ids()
        )

    # -------------------------------------------------------------- counting

    def _counter(self, topic: str) -> TrafficCounter | None:
        counter = self._counts.get(topic)
        if counter is not None:
            return counter
        if not self._listed(topic):
            if self._unlisted >= MAX_UNLISTED_TOPICS:
                if not self._warned_unlisted:
                    self._warned_unlisted = True
                    logger.warning(
                        "introspector: pubsub messages on more than %d unlisted topics; "
                        "messages on further ones are not counted",
                        MAX_UNLISTED_TOPICS,
                    )
                return None
            self._unlisted += 1
        counter = self._counts[topic] = TrafficCounter()
        return counter

    def _count(self, messages: Iterable[Any], inbound: bool) -> None:
        for msg in messages:
            size = len(msg.data)
            for topic in dict.fromkeys(msg.topicIDs):
                counter = self._counter(str(topic))
                if counter is None:
                    continue
                if inbound:
                    counter.in_packets += 1
                    counter.in_bytes += size
                else:
                    counter.out_packets += 1
                    counter.out_bytes += size

    def _wrap_received(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def is_subscribed_to_msg(msg: Any, *args: Any, **kwargs: Any) -> Any:
            if self._active:
                try:
                    self._count((msg,), inbound=True)
                except Exception:
                    logger.exception("introspector: counting a received pubsub message failed")
            return original(msg, *args, **kwargs)

        return is_subscribed_to_msg

    def _wrap_write(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def write_msg(stream: Any, rpc_msg: Any, *args: Any, **kwargs: Any) -> Any:
            written = await original(stream, rpc_msg, *args, **kwargs)
            if written is True and self._active:
                try:
                    self._count(rpc_msg.publish, inbound=False)
                except Exception:
                    logger.exception("introspector: counting sent pubsub messages failed")
            return written

        return write_msg

    # --------------------------------------------------------- subscriptions

    def _subscribed(self, peer: Any, topic: str) -> bool:
        return peer in self._peer_topics().get(topic, ())

    def _emit_subscription(self, peer_id: str, topic: str, subscribed: bool) -> None:
        content = events.pubsub_subscription_changed(
            peer_id=peer_id, topic=topic, subscribed=subscribed
        )
        self._emitter.emit(events.PUBSUB_SUBSCRIPTION_CHANGED, content)

    def _wrap_handle_subscription(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def handle_subscription(origin_id: Any, sub_message: Any, *args: Any, **kwargs: Any) -> Any:
            topic: str | None = None
            before = False
            if self._active:
                try:
                    topic = str(sub_message.topicid)
                    before = self._subscribed(origin_id, topic)
                except Exception:
                    logger.exception("introspector: reading a pubsub subscription failed")
            result = original(origin_id, sub_message, *args, **kwargs)
            if topic is not None and self._active:
                try:
                    after = self._subscribed(origin_id, topic)
                    if after != before:
                        self._emit_subscription(_peer_str(origin_id), topic, after)
                except Exception:
                    logger.exception("introspector: pubsub subscription event failed")
            return result

        return handle_subscription

    def _check_ours(self) -> None:
        """Emit an event for each change of our own subscriptions since the last check."""
        now = set(self._topic_ids())
        gone, new = sorted(self._ours - now), sorted(now - self._ours)
        self._ours = now
        for topic in new:
            self._emit_subscription(self._local_peer, topic, True)
        for topic in gone:
            self._emit_subscription(self._local_peer, topic, False)

    def _wrap_own_subscription(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def own_subscription(*args: Any, **kwargs: Any) -> Any:
            try:
                return await original(*args, **kwargs)
            finally:
                if self._active:
                    try:
                        self._check_ours()
                    except Exception:
                        logger.exception("introspector: pubsub subscription event failed")

        return own_subscription

    # ------------------------------------------------------------------ mesh

    def _sync(self, pairs: Iterable[tuple[str, Any]], direction: str) -> None:
        """Compare ``router.mesh`` with our copy for each ``(topic, peer)`` and emit a
        graft or prune, in ``direction``, for each one that changed."""
        mesh = self._router_map("mesh")
        for topic, peer in dict.fromkeys(pairs):
            now_in = peer in mesh.get(topic, ())
            known = self._mesh.get(topic)
            if now_in == (known is not None and peer in known):
                continue
            if now_in:
                self._mesh.setdefault(topic, set()).add(peer)
                spec = events.PUBSUB_GRAFT
            else:
                assert known is not None
                known.discard(peer)
                if not known:
                    del self._mesh[topic]
                spec = events.PUBSUB_PRUNE
            content = events.pubsub_mesh_change(
                peer_id=_peer_str(peer), topic=topic, direction=direction
            )
            self._emitter.emit(spec, content)

    def _guarded_sync(self, pairs: Iterable[tuple[str, Any]], direction: str) -> None:
        if not self._active:
            return
        try:
            self._sync(pairs, direction)
        except Exception:
            logger.exception("introspector: pubsub mesh event failed")

    def _wrap_emit_control(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def emit_control_message(
            control_msg: Any, to_peer: Any, *args: Any, **kwargs: Any
        ) -> Any:
            pairs: list[tuple[str, Any]] = []
            if self._active:
                try:
                    pairs = [(str(g.topicID), to_peer) for g in control_msg.graft]
                    pairs += [(str(p.topicID), to_peer) for p in control_msg.prune]
                except Exception:
                    logger.exception("introspector: reading a pubsub control message failed")
            result = await original(control_msg, to_peer, *args, **kwargs)
            if pairs:
                self._guarded_sync(pairs, events.MESH_OUTBOUND)
            return result

        return emit_control_message

    def _wrap_inbound_control(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def handle_control(message: Any, sender: Any, *args: Any, **kwargs: Any) -> Any:
            pair: tuple[str, Any] | None = None
            if self._active:
                try:
                    pair = (str(message.topicID), sender)
                    self._inbound.add(pair)
                except Exception:
                    logger.exception("introspector: reading a pubsub control message failed")
            try:
                return await original(message, sender, *args, **kwargs)
            finally:
                if pair is not None:
                    self._inbound.discard(pair)
                    self._guarded_sync((pair,), events.MESH_INBOUND)

        return handle_control

    def _wrap_leave(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def leave(topic: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await original(topic, *args, **kwargs)
            finally:
                known = self._mesh.get(str(topic), set())
                self._guarded_sync([(str(topic), p) for p in list(known)], events.MESH_OUTBOUND)

        return leave

    def _wrap_remove_peer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def remove_peer(peer_id: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(peer_id, *args, **kwargs)
            finally:
                self._forget_peer(peer_id)

        return remove_peer

    def _forget_peer(self, peer_id: Any) -> None:
        """A peer py-libp2p dropped from every mesh without a PRUNE: out of our copy, silently."""
        mesh = self._router_map("mesh")
        for topic in list(self._mesh):
            peers = self._mesh[topic]
            if peer_id in peers and peer_id not in mesh.get(topic, ()):
                peers.discard(peer_id)
                if not peers:
                    del self._mesh[topic]

    def _reconcile_mesh(self) -> None:
        """Take into our copy, silently, what changed in the mesh that no hook explained
        (pairs a peer's GRAFT/PRUNE handler is still working on are left to it)."""
        mesh = self._router_map("mesh")
        copy: dict[str, set[Any]] = {}
        for topic, peers in mesh.items():
            for peer in peers:
                if (topic, peer) not in self._inbound:
                    copy.setdefault(topic, set()).add(peer)
        for topic, peers in self._mesh.items():
            for peer in peers:
                if (topic, peer) in self._inbound:
                    copy.setdefault(topic, set()).add(peer)
        self._mesh = copy

    # -------------------------------------------------------------- snapshot

    def _score(self, peer: Any, mesh: dict[str, set[Any]]) -> float:
        scorer = tp.GOSSIPSUB_SCORER.get(self._router) if self._router is not None else None
        if scorer is None:
            return 0.0
        score = tp.SCORER_SCORE.get(scorer)
        if score is None:
            return 0.0
        topics = sorted(topic for topic, peers in mesh.items() if peer in peers)
        try:
            return float(score(peer, topics))
        except Exception:
            logger.debug("introspector: gossipsub score failed", exc_info=True)
            return 0.0

    def fill(self, msg: pb.PubSub, window_ms: int) -> None:
        """Fill ``pb.PubSub`` (PROTOCOL.md §3.1) for a snapshot whose window is
        ``window_ms`` ms (the ``inst_bw`` window); see the module doc for sources."""
        if self._active:
            self._check_ours()
            self._reconcile_mesh()
        router = self._router
        protocols = list(router.get_protocols()) if router is not None else []
        msg.router = str(protocols[0]) if protocols else ""
        mesh = {t: set(p) for t, p in self._router_map("mesh").items()}
        fanout = {t: set(p) for t, p in self._router_map("fanout").items()}
        peer_topics = {t: set(p) for t, p in self._peer_topics().items()}
        ours = set(self._topic_ids())
        names = set(mesh) | set(fanout) | set(peer_topics) | ours | set(self._counts)
        for name in sorted(names):
            topic = msg.topics.add(
                name=name,
                subscribed=name in ours,
                mesh_peers=sorted(_peer_str(p) for p in mesh.get(name, ())),
                fanout_peers=sorted(_peer_str(p) for p in fanout.get(name, ())),
                peers=sorted(_peer_str(p) for p in peer_topics.get(name, ())),
            )
            counter = self._counts.get(name) or TrafficCounter()
            fill_gauge(
                topic.messages_in,
                counter.in_bytes,
                counter.in_packets,
                counter.prev_in_bytes,
                window_ms,
            )
            fill_gauge(
                topic.messages_out,
                counter.out_bytes,
                counter.out_packets,
                counter.prev_out_bytes,
                window_ms,
            )
            if window_ms > 0:
                counter.prev_in_bytes = counter.in_bytes
                counter.prev_out_bytes = counter.out_bytes
        protocol_of = getattr(router, "peer_protocol", None)
        protocol_of = protocol_of if isinstance(protocol_of, dict) else {}
        peers: set[Any] = set(protocol_of)
        for subscribers in peer_topics.values():
            peers |= subscribers
        rows = []
        for peer in peers:
            rows.append(
                pb.PubSubPeer(
                    peer_id=_peer_str(peer),
                    protocol=str(protocol_of.get(peer, "")),
                    score=self._score(peer, mesh),
                    topics=sorted(t for t, members in peer_topics.items() if peer in members),
                )
            )
        msg.peers.extend(sorted(rows, key=lambda row: row.peer_id))
