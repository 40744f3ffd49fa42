"""The demo network's work (:class:`Workload`): stream sessions, DHT operations, pubsub.

Three loops, run in the network's nursery until cancelled:

* *sessions* (``work_rate``/s): ping, echo or bulk streams between two online
  nodes, ``observed_share`` of them involving the observed node;
* *DHT operations* (``dht_rate``/s): ``find_peer``, ``put_value``,
  ``get_value``, ``provide``, ``find_providers`` and routing-table refreshes,
  ``observed_dht_share`` of them issued by the observed node (the rest reach it
  as inbound ``/ipfs/kad/1.0.0`` streams);
* *pubsub* (``pubsub_rate``/s): a random online node publishes a message
  (``pubsub_min_bytes``..``pubsub_max_bytes``) on a gossipsub topic, mostly one it
  is subscribed to, one time in five any of ``pubsub_topics`` (gossipsub's fanout).

Each piece of work runs in its node's own nursery, bounded in time; a failure
(a reset during churn, a dial failure, a timeout) is logged at DEBUG and
counted in the node's stats, never propagated.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from libp2p_introspection.demo.node import DHT_NAMESPACE, DemoNode
from libp2p_introspection.demo.options import DemoOptions
from libp2p_introspection.demo.protocols import bulk_session, echo_session, ping_session

logger = logging.getLogger(__name__)

#: Bounds (seconds) on one session and one DHT operation.
SESSION_TIMEOUT_S = 30.0
DHT_OP_TIMEOUT_S = 20.0
#: Number of distinct DHT record keys / provider keys the demo cycles through.
DHT_KEYSPACE = 16


class Workload:
    """The work between ``nodes`` (``nodes[0]`` is the observed node), at the rates of
    ``options``, its choices drawn from ``rng`` (the network's seeded generator)."""

    def __init__(self, nodes: list[DemoNode], options: DemoOptions, rng: random.Random) -> None:
        self._nodes = nodes
        self.options = options
        self._rng = rng
        #: Stream sessions running now.
        self.sessions = 0

    def _online(self) -> list[DemoNode]:
        return [n for n in self._nodes if n.online]

    def _pick_pair(self) -> tuple[DemoNode, DemoNode] | None:
        online = self._online()
        if len(online) < 2:
            return None
        observed = self._nodes[0]
        others = [n for n in online if n is not observed]
        if observed.online and self._rng.random() < self.options.observed_share:
            other = self._rng.choice(others)
            return (observed, other) if self._rng.random() < 0.5 else (other, observed)
        if len(others) >= 2:
            src, dst = self._rng.sample(others, 2)
            return src, dst
        src, dst = self._rng.sample(online, 2)
        return src, dst

    async def session_loop(self) -> None:
        """Start stream sessions at ``work_rate``/s (at most ``max_sessions`` at once)."""
        opts = self.options
        if opts.work_rate <= 0:
            return
        kinds = ("ping", "echo", "bulk")
        while True:
            await trio.sleep(self._rng.expovariate(opts.work_rate))
            pair = self._pick_pair()
            if pair is None or self.sessions >= opts.max_sessions:
                continue
            src, dst = pair
            kind = self._rng.choices(kinds, weights=opts.session_weights)[0]
            rng = self._rng
            work: Callable[[], Awaitable[object]]
            if kind == "ping":
                rounds, gap = rng.randint(1, 5), rng.uniform(0.1, 0.6)
                work = partial(ping_session, src.host, dst.peer_id, rounds, gap, src.stats)
            elif kind == "echo":
                sizes = [rng.randint(16, 4096) for _ in range(rng.randint(1, 8))]
                gap = rng.uniform(0.05, 0.8)
                work = partial(echo_session, src.host, dst.peer_id, sizes, gap, src.stats)
            else:
                upload = rng.random() < 0.5
                size = rng.randint(opts.bulk_min_bytes, opts.bulk_max_bytes)
                work = partial(
                    bulk_session,
                    src.host,
                    dst.peer_id,
                    upload,
                    size,
                    opts.bulk_rate_bytes_per_s,
                    src.stats,
                )
            self.sessions += 1
            if not src.spawn(self._session, src, dst, kind, work):
                self.sessions -= 1

    async def _session(
        self, src: DemoNode, dst: DemoNode, kind: str, work: Callable[[], Awaitable[object]]
    ) -> None:
        try:
            with trio.fail_after(SESSION_TIMEOUT_S):
                await work()
            logger.debug("%s -> %s: %s session done", src.name, dst.name, kind)
        except Exception as exc:
            src.stats.sessions_failed += 1
            logger.debug("%s -> %s: %s session failed: %r", src.name, dst.name, kind, exc)
        finally:
            self.sessions -= 1

    async def dht_loop(self) -> None:
        """Start DHT operations at ``dht_rate``/s."""
        opts = self.options
        if opts.dht_rate <= 0:
            return
        ops = ("find_peer", "put_value", "get_value", "provide", "find_providers", "refresh")
        weights = (3, 3, 3, 2, 2, 1)
        while True:
            await trio.sleep(self._rng.expovariate(opts.dht_rate))
            online = self._online()
            if len(online) < 2:
                continue
            others = [n for n in online if not n.is_observed]
            if self._nodes[0].online and self._rng.random() < opts.observed_dht_share:
                node = self._nodes[0]
            else:
                node = self._rng.choice(others)
            op = self._rng.choices(ops, weights=weights)[0]
            target = self._rng.choice([n for n in self._nodes if n is not node])
            key_index = self._rng.randrange(DHT_KEYSPACE)
            node.spawn(self._dht_op, node, op, target, key_index)

    async def _dht_op(self, node: DemoNode, op: str, target: DemoNode, key_index: int) -> None:
        dht = node.dht
        key = f"/{DHT_NAMESPACE}/key-{key_index}"
        content = f"libp2p-introspection-demo-content-{key_index}"
        node.stats.dht_ops[op] += 1
        try:
            with trio.fail_after(DHT_OP_TIMEOUT_S):
                if op == "find_peer":
                    await dht.find_peer(target.peer_id)
                elif op == "put_value":
                    value = f"{time.time_ns()}:{node.name} says hi".encode()
                    await dht.put_value(key, value)
                elif op == "get_value":
                    await dht.get_value(key)
                elif op == "provide":
                    await dht.provide(content)
                elif op == "find_providers":
                    await dht.find_providers(content)
                else:
                    await dht.peer_routing.refresh_routing_table()
            logger.debug("%s: dht %s done", node.name, op)
        except Exception as exc:
            node.stats.dht_ops_failed += 1
            logger.debug("%s: dht %s failed: %r", node.name, op, exc)

    async def pubsub_loop(self) -> None:
        """Publish gossipsub messages at ``pubsub_rate``/s, network-wide."""
        opts = self.options
        if opts.pubsub_rate <= 0 or not opts.pubsub_topics:
            return
        while True:
            await trio.sleep(self._rng.expovariate(opts.pubsub_rate))
            online = self._online()
            if not online:
                continue
            node = self._rng.choice(online)
            own = node.topics or opts.pubsub_topics
            topic = self._rng.choice(own if self._rng.random() < 0.8 else opts.pubsub_topics)
            size = self._rng.randint(opts.pubsub_min_bytes, opts.pubsub_max_bytes)
            data = f"{node.name} {time.time_ns()} ".encode().ljust(size, b".")[:size]
            node.spawn(self._publish, node, topic, data)

    async def _publish(self, node: DemoNode, topic: str, data: bytes) -> None:
        try:
            with trio.fail_after(SESSION_TIMEOUT_S):
                await node.publish(topic, data)
        except Exception as exc:
            node.stats.pubsub_failed += 1
            logger.debug("%s: publish on %s failed: %r", node.name, topic, exc)
