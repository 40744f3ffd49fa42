"""The demo network (:class:`DemoNetwork`): real py-libp2p nodes doing real work.

Lifecycle of :meth:`DemoNetwork.run`:

1. The observed node (index 0) starts: host listening on loopback, DHT
   running, handlers installed, no connection yet.
2. ``options.on_observed_ready(node)`` is awaited (attach an introspector
   here, before any traffic).
3. The other nodes start one by one; each dials the observed node plus up to
   ``options.extra_links`` random online nodes, adds its connected peers to its
   DHT routing table and runs a DHT self-lookup (``FIND_NODE``), which makes
   the peers it queries add it to their routing tables too.
4. ``task_status.started()``: every node is up, connected and bootstrapped.
5. Until cancelled, background loops generate work:

   * *sessions*, *DHT operations* and *pubsub* messages
     (:mod:`libp2p_introspection.demo.workload`); every node is subscribed to
     all of ``pubsub_topics`` but one;
   * *churn* (every ~``churn_interval_s``): a random non-observed node closes
     its host (all its connections close), stays offline
     ~``churn_downtime_s``, then rejoins with the same identity and port;
   * *maintenance* (every few seconds): restarts nodes whose incarnation
     crashed and refreshes every node's address book;
   * *reachability* (every ``reachability_interval_s``): the observed node's
     AutoNAT asks its online peers to dial it back (on loopback they can:
     PUBLIC once enough of them agree).

Every task lives in the caller's nursery; cancelling it shuts every node down
(each host is closed, shielded and bounded). Errors from demo work (resets
during churn, dial failures, timeouts) are logged at DEBUG and counted, never
propagated.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.host.autonat.autonat import CONFIRMATIONS_REQUIRED
from libp2p.peer.id import ID as PeerID
from libp2p.peer.peerinfo import PeerInfo

from libp2p_introspection.demo._quiet import quiet_libp2p_warnings
from libp2p_introspection.demo.node import DemoNode
from libp2p_introspection.demo.options import DemoOptions
from libp2p_introspection.demo.workload import Workload

logger = logging.getLogger(__name__)

#: Bounds (seconds) on one connection attempt and one bootstrap lookup.
CONNECT_TIMEOUT_S = 10.0
BOOTSTRAP_TIMEOUT_S = 15.0
#: Bound on one AutoNAT check of the observed node (it asks its peers one by one).
REACHABILITY_TIMEOUT_S = 60.0
#: Seconds between maintenance passes (crash restarts, address-book refresh).
MAINTENANCE_INTERVAL_S = 5.0
#: Permanent TTL in py-libp2p's peerstore.
_PERMANENT_TTL = 0


class DemoNetwork:
    """A small network of real py-libp2p nodes on loopback; see the module doc.

    ``nodes[0]`` is the observed node (also :attr:`observed`): created first,
    never churned. Use it as ``HostIntrospector(net.observed.host,
    dht=net.observed.dht)``, ideally from ``options.on_observed_ready`` so the
    introspector sees every connection from the first one.
    """

    def __init__(self, options: DemoOptions | None = None) -> None:
        self.options = options or DemoOptions()
        opts = self.options
        #: The effective seed (``options.seed`` or a random one), for logs.
        self.seed: int = (
            opts.seed if opts.seed is not None else random.SystemRandom().getrandbits(32)
        )
        self._rng = random.Random(self.seed)
        use_mplex = opts.mplex_node and opts.nodes >= 3
        # The observed node's AutoNAT verdict: as many peers as the spec asks, or all it has.
        confirmations = min(CONFIRMATIONS_REQUIRED, opts.nodes - 1)
        self.nodes: list[DemoNode] = [
            DemoNode(
                i,
                create_new_key_pair(self._rng.randbytes(32)),
                muxer="mplex" if use_mplex and i == opts.nodes - 1 else "yamux",
                listen_ip=opts.listen_ip,
                bulk_rate_bytes_per_s=opts.bulk_rate_bytes_per_s,
                topics=node_topics(opts.pubsub_topics, i),
                autonat_confirmations=confirmations if i == 0 else None,
            )
            for i in range(opts.nodes)
        ]
        #: The stream sessions and DHT operations between the nodes.
        self.workload = Workload(self.nodes, opts, self._rng)
        self._churning: DemoNode | None = None
        self._nursery: trio.Nursery | None = None
        #: Number of churn events so far (a node left and, normally, rejoined).
        self.churn_events = 0

    # -- public accessors -------------------------------------------------

    @property
    def observed(self) -> DemoNode:
        """The node the introspection server looks at (never churned)."""
        return self.nodes[0]

    @property
    def others(self) -> list[DemoNode]:
        """The non-observed nodes."""
        return self.nodes[1:]

    def online_nodes(self) -> list[DemoNode]:
        """Nodes whose host is currently running."""
        return [n for n in self.nodes if n.online]

    # -- lifecycle --------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every node, then keep the network busy until cancelled.

        Reports started (for ``nursery.start``) once all nodes are up,
        connected and bootstrapped. Never returns normally. Raises if a node
        fails to start, if ``on_observed_ready`` raises, or if the observed
        node's host or DHT service fails; a failing non-observed node is only
        logged and restarted.
        """
        logger.info("demo network: %d nodes, seed %d", len(self.nodes), self.seed)
        with quiet_libp2p_warnings(self.options.quiet_libp2p_warnings):
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await nursery.start(self.observed.run)
                    await self._call_hook()
                    await self.observed.join_topics()
                    for node in self.others:
                        await nursery.start(self._run_node, node)
                    nursery.start_soon(self.workload.session_loop)
                    nursery.start_soon(self.workload.dht_loop)
                    nursery.start_soon(self.workload.pubsub_loop)
                    nursery.start_soon(self._maintenance_loop)
                    nursery.start_soon(self._reachability_loop)
                    if self.options.churn:
                        nursery.start_soon(self._churn_loop)
                    logger.info(
                        "demo network up; observed node %s at %s",
                        self.observed.peer_id,
                        self.observed.listen_addr,
                    )
                    task_status.started()
                    await trio.sleep_forever()
                finally:
                    self._nursery = None
                    for node in self.nodes:
                        node.leave()

    async def _call_hook(self) -> None:
        hook = self.options.on_observed_ready
        if hook is None:
            return
        result = hook(self.observed)
        if inspect.isawaitable(result):
            await result

    async def _run_node(
        self, node: DemoNode, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one incarnation of a non-observed node; a crash only takes it offline."""
        started = False

        def report() -> None:
            nonlocal started
            started = True
            task_status.started()

        status = _StartedHook(report)
        try:
            await node.run(self._join, task_status=status)
        except Exception as exc:
            if not started:
                raise
            logger.info("%s crashed, will restart: %r", node.name, exc)

    async def _start_node(self, node: DemoNode) -> None:
        """(Re)start ``node`` in the network nursery; log instead of raising."""
        if self._nursery is None or node.online:
            return
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S + BOOTSTRAP_TIMEOUT_S + 5):
                await node.wait_stopped()
                await self._nursery.start(self._run_node, node)
        except Exception as exc:
            logger.info("%s failed to (re)start: %r", node.name, exc)

    async def _join(self, node: DemoNode) -> None:
        """Connect ``node`` to the observed node and a few others, bootstrap its DHT."""
        hook = self.options.on_node_ready
        if hook is not None:
            result = hook(node)
            if inspect.isawaitable(result):
                await result
        host = node.host
        await node.join_topics()  # before any connection: the hello packets carry them
        peers = [n for n in self.online_nodes() if n is not node]
        self._learn_addresses(node)
        targets = [n for n in peers if n.is_observed]
        rest = [n for n in peers if not n.is_observed]
        targets += self._rng.sample(rest, min(self.options.extra_links, len(rest)))
        for target in targets:
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    await host.connect(PeerInfo(target.peer_id, [target.listen_addr]))
            except Exception as exc:
                logger.debug("%s: connect to %s failed: %r", node.name, target.name, exc)
        # py-libp2p quirk: host.connect() re-adds the address with a 120 s TTL,
        # and peerstore TTLs are per peer: once expired the addresses are
        # dropped and neither redials nor routing-table inserts work. Re-add
        # them as permanent.
        self._learn_addresses(node)
        # py-libp2p quirk: connections alone do not fill routing tables; a peer
        # is added when we add it explicitly, when it sends us a DHT query, or
        # when it shows up in a lookup. Add the connected peers, then do a
        # self-lookup so every queried peer also adds us.
        for peer_id in host.get_connected_peers():
            try:
                await node.dht.add_peer(peer_id, skip_server_mode_check=True)
            except Exception as exc:
                logger.debug("%s: add_peer failed: %r", node.name, exc)
        with trio.move_on_after(BOOTSTRAP_TIMEOUT_S):
            try:
                await node.dht.peer_routing.find_closest_peers_network(node.peer_id.to_bytes())
            except Exception as exc:
                logger.debug("%s: bootstrap lookup failed: %r", node.name, exc)
        node.stats.dht_ops["bootstrap"] += 1
        logger.debug(
            "%s joined: %d connections, routing table %d",
            node.name,
            len(host.get_connected_peers()),
            node.dht.get_routing_table_size(),
        )

    def _learn_addresses(self, node: DemoNode) -> None:
        """Make ``node`` and every online node know each other's address, permanently.

        Stands in for a bootstrap list: ports never change across rejoins, so
        addresses stay valid while a node is offline.
        """
        if not node.online:
            return
        store = node.host.get_peerstore()
        for other in self.nodes:
            if other is node or other.port == 0:
                continue
            store.add_addrs(other.peer_id, [other.listen_addr], _PERMANENT_TTL)
            if other.online:
                other.host.get_peerstore().add_addrs(
                    node.peer_id, [node.listen_addr], _PERMANENT_TTL
                )

    # -- churn and maintenance --------------------------------------------

    async def _churn_loop(self) -> None:
        opts = self.options
        while True:
            await trio.sleep(self._rng.uniform(2 / 3, 4 / 3) * opts.churn_interval_s)
            candidates = [n for n in self.others if n.online]
            if not candidates:
                continue
            node = self._rng.choice(candidates)
            downtime = self._rng.uniform(0.5, 1.5) * opts.churn_downtime_s
            await self.churn(node, downtime)

    async def churn(self, node: DemoNode, downtime_s: float) -> None:
        """Make ``node`` leave (host closed), wait ``downtime_s`` s, then rejoin.

        Also usable directly (e.g. from tests). The observed node cannot churn.
        """
        if node.is_observed:
            raise ValueError("the observed node is never churned")
        logger.info("churn: %s leaves for %.1f s", node.name, downtime_s)
        self._churning = node
        try:
            node.leave()
            with trio.move_on_after(CONNECT_TIMEOUT_S):
                await node.wait_stopped()
            node.stats.churned += 1
            self.churn_events += 1
            await trio.sleep(downtime_s)
            await self._start_node(node)
        finally:
            self._churning = None
        logger.info("churn: %s rejoined", node.name)

    async def _maintenance_loop(self) -> None:
        while True:
            await trio.sleep(MAINTENANCE_INTERVAL_S)
            for node in self.others:
                if not node.online and node is not self._churning:
                    logger.info("restarting %s", node.name)
                    await self._start_node(node)
            for node in self.online_nodes():
                self._learn_addresses(node)


    async def _reachability_loop(self) -> None:
        observed = self.observed
        while True:
            servers = [n.peer_id for n in self.online_nodes() if not n.is_observed]
            if servers and observed.online:
                observed.spawn(self._check_reachability, observed, servers)
            await trio.sleep(self.options.reachability_interval_s)

    @staticmethod
    async def _check_reachability(node: DemoNode, servers: list[PeerID]) -> None:
        try:
            with trio.fail_after(REACHABILITY_TIMEOUT_S):
                status = await node.autonat.check_reachability(servers)
            logger.debug("%s: AutoNAT status %s", node.name, status)
        except Exception as exc:
            logger.debug("%s: AutoNAT check failed: %r", node.name, exc)


def node_topics(topics: tuple[str, ...], index: int) -> tuple[str, ...]:
    """The topics node ``index`` subscribes to: all but the one at ``index % len(topics)``
    (all of them when there are fewer than two)."""
    if len(topics) < 2:
        return topics
    skip = index % len(topics)
    return tuple(t for i, t in enumerate(topics) if i != skip)


class _StartedHook:
    """A ``task_status`` stand-in that runs a callback on ``started()``.

    Lets :meth:`DemoNetwork._run_node` know whether the node reported started
    before an exception (startup failure: re-raise to ``nursery.start``) or
    after (crash: log it, the maintenance loop restarts the node).
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def started(self, value: object = None) -> None:
        self._callback()
