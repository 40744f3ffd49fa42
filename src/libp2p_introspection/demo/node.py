"""One node of the demo network (:class:`DemoNode`).

A node owns a fixed identity (Ed25519 key pair) and a fixed TCP port on
loopback. Each time it (re)joins the network it starts a fresh *incarnation*:
a new py-libp2p ``BasicHost`` with that identity, listening on that port, with
a Kademlia DHT in server mode and the demo protocol handlers. When it leaves
(churn, or the network shutting down) the incarnation's host is closed, which
closes all its connections; the next incarnation reuses the identity and port
so the other nodes' address books stay valid.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee, ISubscriptionAPI
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TMuxerOptions, TProtocol
from libp2p.host.autonat import AutoNATService
from libp2p.host.basic_host import BasicHost
from libp2p.host.ping import PingService
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID as PeerID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.records.validator import Validator
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.tools.anyio_service import background_trio_service

from libp2p_introspection.demo.protocols import (
    BULK_PROTOCOL_ID,
    ECHO_PROTOCOL_ID,
    PING_PROTOCOL_ID,
    count_inbound,
    make_bulk_handler,
    make_echo_handler,
)
from libp2p_introspection.demo.stats import NodeStats

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

#: DHT record namespace the demo writes to (keys look like ``/demo/key-3``).
DHT_NAMESPACE = "demo"
#: Seconds allowed for closing a host's connections and listeners on shutdown.
CLOSE_TIMEOUT_S = 3.0
#: The gossipsub protocols every node speaks, preferred first.
GOSSIPSUB_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)
#: Seconds between gossipsub heartbeats (mesh maintenance, gossip): go-libp2p's 1 s,
#: so grafts and prunes show up while the demo runs (py-libp2p's default is 120 s).
#: py-libp2p's "adaptive gossip" (on by default) would replace it after the first
#: heartbeats by 30-60 s whenever its network-health score is below 0.7 (it scales
#: from a 120 s base; a four-node network never scores higher). The message cache
#: only moves on at a heartbeat, so each IHAVE then announces up to minutes of
#: messages, and a node that (re)joins asks for all of them at once: its peer sends
#: it a burst above gossipsub's own limit of 10 messages per topic per second from
#: one peer, logged as "Rate limit exceeded for peer ... on topic ..." and dropped.
#: The demo's routers run with adaptive gossip off, so the heartbeat stays 1 s.
GOSSIPSUB_HEARTBEAT_S = 1

Muxer = Literal["yamux", "mplex"]


class DemoRecordValidator(Validator):
    """Validator for ``/demo/...`` DHT records.

    Values are ``b"<seq>:<text>"`` where ``seq`` is a decimal integer (a
    nanosecond timestamp); the record with the highest ``seq`` wins.
    """

    @staticmethod
    def _seq(value: bytes) -> int:
        head, sep, _ = value.partition(b":")
        if not sep or not head.isdigit():
            raise ValueError("demo record must look like b'<seq>:<text>'")
        return int(head)

    def validate(self, key: str, value: bytes) -> None:
        """Accept well-formed values of at most 1 KiB."""
        if len(value) > 1024:
            raise ValueError("demo record too large")
        self._seq(value)

    def select(self, key: str, values: list[bytes]) -> int:
        """Index of the value with the highest sequence number."""
        best, best_seq = 0, -1
        for i, v in enumerate(values):
            try:
                seq = self._seq(v)
            except ValueError:
                continue
            if seq > best_seq:
                best, best_seq = i, seq
        return best


def demo_router() -> GossipSub:
    """A demo node's gossipsub router: :data:`GOSSIPSUB_PROTOCOLS`, a mesh of 2-4 peers
    per topic (3 wanted), a heartbeat every :data:`GOSSIPSUB_HEARTBEAT_S` s that stays
    so (adaptive gossip off, see there)."""
    return GossipSub(
        list(GOSSIPSUB_PROTOCOLS),
        degree=3,
        degree_low=2,
        degree_high=4,
        heartbeat_interval=GOSSIPSUB_HEARTBEAT_S,
        adaptive_gossip_enabled=False,
    )


class ForgetProtocolsOnLeave(INotifee):
    """Lets py-libp2p identify a peer again each time it comes back.

    py-libp2p 0.8.1's ``BasicHost`` identifies a peer when a connection to it opens
    (``/ipfs/id/1.0.0``, whichever side dialed), unless its peerstore already lists
    ping or identify among the peer's protocols (``BasicHost._has_cached_protocols``):
    then it takes what the peer said on an earlier connection as still true. A demo
    node that churned comes back as a new incarnation (a new host, as a restarted
    process is), so its peers would never ask it again: no ``PeerIdentified`` event,
    no identify stream, what it said last time shown as current. When the last
    connection to a peer closes, this notifee clears the protocols the peerstore
    learnt from it (``clear_protocol_data``; its addresses and keys stay), so the
    next connection is identified by py-libp2p's own identify, as a first one is.
    """

    def __init__(self, host: BasicHost) -> None:
        self._host = host

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        """Forget the peer's protocols if ``conn`` was its last open connection."""
        peer_id = getattr(conn.muxed_conn, "peer_id", None)
        if peer_id is None:
            return
        others = [c for c in network.get_connections(peer_id) if c is not conn]
        if any(not getattr(c, "is_closed", False) for c in others):
            return
        try:
            self._host.get_peerstore().clear_protocol_data(peer_id)
        except Exception as exc:  # a peer py-libp2p already dropped
            logger.debug("forgetting the protocols of %s failed: %r", peer_id, exc)

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        """Nothing: py-libp2p's own notifee identifies the peer."""

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        """Nothing."""

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        """Nothing."""

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        """Nothing."""

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        """Nothing."""


class DemoNode:
    """A demo participant: one identity, restarted as fresh hosts over time.

    Every node runs: py-libp2p's default protocols (identify, identify-push,
    ping), a :class:`~libp2p.kad_dht.kad_dht.KadDHT` in server mode
    (``/ipfs/kad/1.0.0``, accepting ``/demo/...`` records), an
    :class:`~libp2p.host.autonat.AutoNATService` answering dial-back requests
    (``/libp2p/autonat/1.0.0``; its verdicts need ``autonat_confirmations``
    agreeing peers, py-libp2p's default when ``None``), gossipsub
    (``/meshsub/1.2.0``, a :class:`~libp2p.pubsub.pubsub.Pubsub` with a
    :class:`~libp2p.pubsub.gossipsub.GossipSub` router, heartbeat every
    :data:`GOSSIPSUB_HEARTBEAT_S` s; the network subscribes it to ``topics``),
    and the demo echo and bulk responders (see
    :mod:`libp2p_introspection.demo.protocols`).
    The observed node (index 0) is started first and never churned.
    """

    def __init__(
        self,
        index: int,
        key_pair: KeyPair,
        *,
        muxer: Muxer = "yamux",
        listen_ip: str = "127.0.0.1",
        bulk_rate_bytes_per_s: int = 0,
        topics: tuple[str, ...] = (),
        autonat_confirmations: int | None = None,
    ) -> None:
        self.index = index
        self.name = "observed" if index == 0 else f"node-{index}"
        self.key_pair = key_pair
        self.peer_id = PeerID.from_pubkey(key_pair.public_key)
        self.muxer: Muxer = muxer
        self.listen_ip = listen_ip
        #: TCP port, fixed after the first start (0 until then).
        self.port = 0
        self.stats = NodeStats()
        self._bulk_rate = bulk_rate_bytes_per_s
        #: The pubsub topics the network subscribes this node to.
        self.topics = topics
        self._pubsub: Pubsub | None = None
        self._host: BasicHost | None = None
        self._dht: KadDHT | None = None
        self._autonat_confirmations = autonat_confirmations
        self._autonat: AutoNATService | None = None
        self._work: trio.Nursery | None = None
        self._leave: trio.Event | None = None
        self._stopped = trio.Event()
        self._stopped.set()
        self.online = False

    @property
    def is_observed(self) -> bool:
        """Whether this is the node the introspection server looks at."""
        return self.index == 0

    @property
    def host(self) -> BasicHost:
        """The current (or, while offline, the last) incarnation's host."""
        if self._host is None:
            raise RuntimeError(f"{self.name} has not been started yet")
        return self._host

    @property
    def dht(self) -> KadDHT:
        """The current (or last) incarnation's Kademlia DHT."""
        if self._dht is None:
            raise RuntimeError(f"{self.name} has not been started yet")
        return self._dht

    @property
    def pubsub(self) -> Pubsub:
        """The current (or last) incarnation's gossipsub ``Pubsub``."""
        if self._pubsub is None:
            raise RuntimeError(f"{self.name} has not been started yet")
        return self._pubsub

    async def join_topics(self) -> None:
        """Subscribe this incarnation to :attr:`topics` (announced to every pubsub peer) and
        read each subscription, as an application does (:meth:`_read_subscription`).

        Call it while the node is online (its task group reads the subscriptions).
        """
        for topic in self.topics:
            subscription = await self.pubsub.subscribe(topic)
            self.spawn(self._read_subscription, topic, subscription)

    async def _read_subscription(self, topic: str, subscription: ISubscriptionAPI) -> None:
        """Take every message py-libp2p delivers on ``topic`` (counted in
        ``stats.pubsub_received``) until the node leaves or unsubscribes.

        py-libp2p hands a subscriber's messages to a bounded queue
        (``SUBSCRIPTION_CHANNEL_SIZE``, 32) and drops, with a WARNING each, what
        arrives once it is full: a subscription nobody reads fills in seconds.
        """
        async for _message in subscription:
            self.stats.pubsub_received[topic] += 1

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic`` (subscribed or not: gossipsub's fanout)."""
        await self.pubsub.publish(topic, data)
        self.stats.pubsub_published[topic] += 1

    @property
    def autonat(self) -> AutoNATService:
        """The current (or last) incarnation's AutoNAT service."""
        if self._autonat is None:
            raise RuntimeError(f"{self.name} has not been started yet")
        return self._autonat

    @property
    def listen_addr(self) -> multiaddr.Multiaddr:
        """The node's TCP listen address (without ``/p2p``)."""
        return multiaddr.Multiaddr(f"/ip4/{self.listen_ip}/tcp/{self.port}")

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> bool:
        """Run ``fn(*args)`` in this incarnation's task group.

        The task is cancelled when the node leaves. Returns ``False`` (and
        does nothing) if the node is offline.
        """
        if not self.online or self._work is None:
            return False
        self._work.start_soon(fn, *args)
        return True

    def _muxer_opt(self) -> TMuxerOptions | None:
        if self.muxer == "mplex":
            # Offer only mplex, so every connection of this node uses mplex
            # whichever side dials (with the default options the dialer's
            # preference, yamux, would win when the observed node dials).
            return {TProtocol(MPLEX_PROTOCOL_ID): Mplex}
        return None

    def _install_handlers(self, host: BasicHost, dht: KadDHT) -> None:
        stats = self.stats
        # Same handler py-libp2p installs by default, wrapped to count streams.
        ping = PingService(host)
        host.set_stream_handler(PING_PROTOCOL_ID, count_inbound(ping.handle_ping, stats))
        # KadDHT registered its handler in __init__ (server mode); wrap it.
        host.set_stream_handler(KAD_PROTOCOL_ID, count_inbound(dht.handle_stream, stats))
        host.set_stream_handler(ECHO_PROTOCOL_ID, make_echo_handler(stats))
        host.set_stream_handler(BULK_PROTOCOL_ID, make_bulk_handler(stats, self._bulk_rate))

    async def run(
        self,
        on_up: Callable[[DemoNode], Awaitable[None]] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one incarnation until :meth:`leave` is called or cancelled.

        Starts the host and the DHT, then awaits ``on_up(self)`` (the network
        uses it to connect and bootstrap), then reports started. On exit the
        host is closed (bounded by :data:`CLOSE_TIMEOUT_S`, shielded so it also
        happens when the surrounding nursery is cancelled).
        """
        if not self._stopped.is_set():
            raise RuntimeError(f"{self.name} is already running")
        self._stopped = trio.Event()
        self._leave = trio.Event()
        try:
            await self._run(on_up, task_status)
        finally:
            self.online = False
            self._work = None
            self._stopped.set()

    async def _run(
        self,
        on_up: Callable[[DemoNode], Awaitable[None]] | None,
        task_status: trio.TaskStatus[None],
    ) -> None:
        while True:
            listen = self.listen_addr
            host = new_host(
                key_pair=self.key_pair, muxer_opt=self._muxer_opt(), listen_addrs=[listen]
            )
            assert isinstance(host, BasicHost)
            async with host.run([listen]):
                try:
                    addrs = host.get_transport_addrs()
                    if addrs:
                        self.port = int(addrs[0].value_for_protocol("tcp") or 0)
                        await self._serve(host, on_up, task_status)
                        break
                finally:
                    await self._close_host(host)
            # py-libp2p quirk: a failed listen (e.g. our fixed port was taken
            # while we were offline) is only logged; host.run() carries on
            # with no listener. Retry once on a fresh port.
            if self.port == 0:
                raise OSError(f"{self.name}: could not listen on {listen}")
            logger.info("%s: port %d unavailable, picking a new one", self.name, self.port)
            self.port = 0
        logger.info("%s down", self.name)

    async def _serve(
        self,
        host: BasicHost,
        on_up: Callable[[DemoNode], Awaitable[None]] | None,
        task_status: trio.TaskStatus[None],
    ) -> None:
        assert self._leave is not None
        dht = KadDHT(host, DHTMode.SERVER)
        dht.register_validator(DHT_NAMESPACE, DemoRecordValidator())
        self._install_handlers(host, dht)
        host.get_network().register_notifee(ForgetProtocolsOnLeave(host))
        router = demo_router()
        pubsub = Pubsub(host, router)
        self._host, self._dht, self._pubsub = host, dht, pubsub
        self._autonat = AutoNATService(host, confirmations=self._autonat_confirmations)
        self.stats.starts += 1
        try:
            async with (
                background_trio_service(dht),
                background_trio_service(pubsub),
                background_trio_service(router),
                trio.open_nursery() as work,
            ):
                await pubsub.wait_until_ready()
                self._work = work
                self.online = True
                if on_up is not None:
                    await on_up(self)
                logger.info("%s up: %s (%s)", self.name, host.get_addrs()[0], self.muxer)
                task_status.started()
                await self._leave.wait()
                self.online = False
                work.cancel_scope.cancel()
        finally:
            self.online = False

    async def _close_host(self, host: BasicHost) -> None:
        # py-libp2p quirk: when the task is cancelled, host.run()'s exit does
        # not close anything (the swarm's cleanup dies at its first
        # checkpoint): the connections stay open and the listener stays
        # bound. Closing the host explicitly, shielded and bounded, closes
        # every connection and listener so peers see the node go away.
        self.online = False
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            try:
                await host.close()
            except Exception as exc:  # best-effort shutdown
                logger.debug("%s: error closing host: %r", self.name, exc)

    def leave(self) -> None:
        """Ask the running incarnation to shut down (returns immediately)."""
        if self._leave is not None:
            self._leave.set()

    async def wait_stopped(self) -> None:
        """Wait until the current incarnation (if any) has fully shut down."""
        await self._stopped.wait()

    def __repr__(self) -> str:
        state = "online" if self.online else "offline"
        return f"<DemoNode {self.name} {self.peer_id} {self.muxer} {state}>"
