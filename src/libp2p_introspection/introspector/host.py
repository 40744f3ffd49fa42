"""``HostIntrospector``: introspection data of a live py-libp2p host.

Attach to a running host in one line and serve it::

    introspector = HostIntrospector(host, dht=dht)   # hooks installed, counting starts now
    ...
    introspector.detach()                             # every hook removed

What it installs (all undone by :meth:`HostIntrospector.detach`):

* a ``Swarm`` notifee (``swarm.register_notifee``) for connection and stream
  lifecycle;
* instance-level wrappers on the swarm's ``TransportUpgrader``
  (``upgrade_security``/``upgrade_connection``) for connection timelines and
  byte counting from the first handshake byte;
* instance-level ``read``/``write`` wrappers on each connection's raw
  transport connection and on each ``NetStream`` (byte counting), and
  ``set_protocol`` on each ``NetStream`` (StreamOpened events);
* the ending hooks of :mod:`libp2p_introspection.introspector.endings`:
  ``SwarmConn.close``, the secured connection's ``read``/``write`` (failures
  only), the muxer's stream bookkeeping (yamux ``_finalize_stream_locked``;
  mplex ``_handle_close``/``_handle_reset``/``read_message``) and each muxed
  stream's ``reset`` (how streams and connections end);
* on the swarm's ``ResourceManager``, if any, ``_record_blocked_resource``
  (refused reservations; see :mod:`libp2p_introspection.introspector.resources`);
* when a DHT is given, instance-level wrappers on the ``KadDHT`` and its
  routing table / peer routing / value and provider stores (see
  :mod:`libp2p_introspection.introspector.dht`);
* a reader of the identify messages peers send on the streams it counts
  (:mod:`~libp2p_introspection.introspector.identify`) and, when an AutoNAT
  service is given, a wrapper on its ``update_status``
  (:mod:`~libp2p_introspection.introspector.node`);
* when a ``Pubsub`` is given, instance-level wrappers on it and its router
  (see :mod:`libp2p_introspection.introspector.pubsub`).

Connections and streams that already exist when it is attached are adopted:
they appear in snapshots with traffic counted from the attach time, and no
events are emitted for them.
"""

from __future__ import annotations

import logging
import struct
import time
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from multiaddr import Multiaddr

from libp2p_introspection.abc import EventSink, SampledSource, SourceOutlet
from libp2p_introspection.abc import log as source_log
from libp2p_introspection.config import DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
from libp2p_introspection.introspector import _accel
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.application import ApplicationData
from libp2p_introspection.introspector.connections import ConnectionRegistry
from libp2p_introspection.introspector.dht import DhtTracker
from libp2p_introspection.introspector.encoder import IncrementalEncoder, state_pieces
from libp2p_introspection.introspector.identify import IdentifyTracker
from libp2p_introspection.introspector.node import NodeTracker
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.protocols import ProtocolTracker
from libp2p_introspection.introspector.pubsub import PubsubTracker
from libp2p_introspection.introspector.resources import ResourceTracker
from libp2p_introspection.introspector.traffic import TrafficCounter
from libp2p_introspection.introspector.upgrades import UpgradeTracker
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.clock import ClockMs, wall_clock_ms
from libp2p_introspection.protocol.events import EventEmitter
from libp2p_introspection.protocol.framing import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    FrameTooLargeError,
    encode_varint,
    state_message,
)
from libp2p_introspection.protocol.runtime import build_runtime

if TYPE_CHECKING:
    from libp2p.host.autonat import AutoNATService
    from libp2p.kad_dht.kad_dht import KadDHT
    from libp2p.pubsub.pubsub import Pubsub

logger = logging.getLogger(__name__)

IMPLEMENTATION = "py-libp2p"
#: How long the C connection loop works between two yields (``encoded_state_async``), ns.
#: (Without it, ``encoder.SLICE_CONNECTIONS`` connections at a time.)
SLICE_BUDGET_NS = 250_000
#: Moved streams encoded in Python between two looks at the clock.
SLICE_STREAMS = 64
#: Moved streams the C loop looks at between two looks at the clock (under 0.5 µs each;
#: those it leaves to Python go :data:`SLICE_STREAMS` at a time).
SLICE_STREAMS_C = 512
#: How long :meth:`HostIntrospector.encoded_state_async` works before it yields to the
#: node's other tasks, seconds.
SLICE_SECONDS = 0.001


class _Build:
    """One sliced snapshot build: its steps (a generator) and, once they ran, its bytes
    (``pieces``: the serialized ``State`` is their concatenation, :attr:`result`)."""

    __slots__ = ("pieces", "steps")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.steps: Iterator[None] = iter(())

    @property
    def result(self) -> bytes:
        """The serialized ``State`` (the pieces joined; ``b""`` before the steps ran)."""
        return b"".join(self.pieces)

    def finish(self) -> bytes:
        """Run the remaining steps at once, without yielding; the snapshot's bytes."""
        return b"".join(self.finish_pieces())

    def finish_pieces(self) -> list[bytes]:
        """:meth:`finish`, as the pieces of the bytes."""
        for _ in self.steps:
            pass
        return self.pieces


#: ``ServerMessage.version``, then the tag of ``ServerMessage.state`` (its length follows).
_MESSAGE_HEAD = state_message(b"")[:-1]
#: The live frame's header (framing.encode_frame): version, FNV-1a 32 of the message, size.
_FRAME_HEADER = struct.Struct("<III")
#: Bytes of a frame hashed between two yields to the node (``take_snapshot_async``): about
#: 0.25 ms of FNV-1a byte by byte, 0.1 ms on the C block path (``_snapcode.FNV1A32_BLOCKED``).
HASH_SLICE_BYTES = 1 << 18


def _frame_pieces(pieces: list[bytes]) -> tuple[list[bytes], int]:
    """The pieces of ``ServerMessage{version, state}`` for a ``State`` given as pieces,
    and its size. Raises ``FrameTooLargeError`` as ``framing.encode_frame``."""
    state_size = sum(map(len, pieces))
    message = [_MESSAGE_HEAD + encode_varint(state_size), *pieces]
    size = len(message[0]) + state_size
    if size > MAX_MESSAGE_SIZE:
        raise FrameTooLargeError(
            f"message of {size} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit"
        )
    return message, size


def _joined_frame(message: list[bytes], size: int, checksum: int) -> bytes:
    """The frame (``framing.frame_with_checksum``) of a message given as pieces, in one copy."""
    message[0] = _FRAME_HEADER.pack(PROTOCOL_VERSION, checksum, size) + message[0]
    return b"".join(message)


#: Each host's network (``Swarm``) -> the introspector attached to it, if any: at most
#: one at a time (:class:`HostIntrospector` raises ``RuntimeError`` for a second).
_ATTACHED: weakref.WeakKeyDictionary[Any, HostIntrospector] = weakref.WeakKeyDictionary()


class _Notifee(INotifee):
    """Forwards ``Swarm`` notifications to the introspector; never raises."""

    def __init__(self, owner: HostIntrospector) -> None:
        self._owner = owner

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._guard(self._owner._registry.on_connected, conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._guard(self._owner._registry.on_disconnected, conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        self._owner._guard(self._owner._registry.on_stream_opened, stream)

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        self._owner._guard(self._owner._registry.on_stream_closed, stream)

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        self._owner._guard(self._owner._node_info.check_listen_addrs)

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        self._owner._guard(self._owner._node_info.check_listen_addrs)


class HostIntrospector(SampledSource):
    """Introspection source reading a live py-libp2p ``BasicHost``.

    Attaches on construction. Counting starts at that moment. At most one introspector
    is attached to a host at a time: constructing a second raises ``RuntimeError``
    until the first is detached.

    :param host: a py-libp2p host (``libp2p.new_host(...)``); its network must
        be the py-libp2p ``Swarm``.
    :param dht: optional ``libp2p.kad_dht.kad_dht.KadDHT`` of this host; adds
        ``State.subsystems.dht`` and the DHT query events.
    :param pubsub: optional ``libp2p.pubsub.pubsub.Pubsub`` of this host (FloodSub
        or GossipSub router); adds ``State.subsystems.pubsub`` and the pubsub
        events. Without it ``Subsystems.pubsub`` is absent.
    :param autonat: optional ``libp2p.host.autonat.AutoNATService`` of this host:
        ``State.node.reachability`` is its status (``NOT_RUNNING`` without one)
        and ``ReachabilityChanged`` is declared and emitted.
    :param closed_connection_lifetime_ms: how long a closed connection stays
        in snapshots as CLOSED, ms.
    :param clock_ms: wall clock returning ms since the Unix epoch (default:
        the real clock); every timestamp and bandwidth window uses it.
    :param incremental: build snapshots incrementally (the default: each connection's
        and stream's bytes are kept and only what moved is encoded again, see
        :mod:`~libp2p_introspection.introspector.encoder`); ``False`` builds every
        snapshot from scratch (the reference the tests compare it with). Both give
        the same bytes.

    Data shapes and units (PROTOCOL.md §3): timestamps ms since epoch; traffic
    in bytes and packets, ``inst_bw`` bytes per second over the window
    ``start_ts..instant_ts``; latency ns.

    * Connection traffic is measured at the raw transport connection
      (``RawConnection`` under the security session: what crosses the TCP
      socket, including Noise and muxer overhead). A packet is one
      ``read()``/``write()`` call on it (Noise writes one frame per call and
      reads each frame as two calls, length prefix then body).
    * Stream traffic is the application payload read from / written to the
      ``NetStream`` after its protocol was negotiated; a packet is one
      ``NetStream.read()`` returning data or one ``NetStream.write()``.
    * Node traffic (``State.traffic``) is the sum over every connection seen
      since attach, including closed and purged ones and failed handshakes.
    * ``latency_ns``: the yamux muxer's ping RTT (``Yamux.rtt()``); for mplex,
      or before the first yamux pong, the peerstore's latency EWMA; else 0.
    * Roles: a connection is INITIATOR when we dialed it
      (``SwarmConn.direction``); a stream when we opened it
      (``is_initiator`` of its muxed stream).
    * Endings: a stream reset by either side, or cut by its connection's
      end, is ERROR, else CLOSED; a connection whose transport, security
      layer or mplex framing failed is ERROR, else CLOSED. Read from the
      muxer's state, so a reset the handler never notices still ends the
      stream (``StreamClosed`` ``status``/``reason`` say how; see
      :mod:`~libp2p_introspection.introspector.connections`).
    * Retention: ended (CLOSED or ERROR) connections stay for
      ``closed_connection_lifetime_ms``; ended streams appear in exactly one
      more snapshot, then go.
    """

    def __init__(
        self,
        host: IHost,
        *,
        dht: KadDHT | None = None,
        pubsub: Pubsub | None = None,
        autonat: AutoNATService | None = None,
        closed_connection_lifetime_ms: int = DEFAULT_CLOSED_CONNECTION_LIFETIME_MS,
        clock_ms: ClockMs | None = None,
        incremental: bool = True,
    ) -> None:
        swarm = host.get_network()
        other = _ATTACHED.get(swarm)
        if other is not None and other.attached:
            raise RuntimeError(
                "this host already has an introspector attached: detach it first "
                "(two would wrap each other's hooks, and neither could restore py-libp2p's)"
            )
        self._host = host
        self._incremental = incremental
        #: A sliced build paused half-way (:meth:`encoded_state_async`), and the bytes of
        #: the last one a synchronous call had to finish.
        self._pending: _Build | None = None
        self._swarm = swarm
        self._clock_ms: ClockMs = clock_ms or wall_clock_ms
        self._patcher = InstancePatcher()
        specs = events.CONNECTION_EVENTS + (events.DHT_EVENTS if dht is not None else ())
        specs += events.PUBSUB_EVENTS if pubsub is not None else ()
        specs += tuple(
            spec
            for spec in events.NODE_EVENTS
            if autonat is not None or spec is not events.REACHABILITY_CHANGED
        )
        self._events = EventEmitter(self._clock_ms, specs)
        self._attach_ts = self._clock_ms()
        self._last_instant = self._attach_ts
        self._node = TrafficCounter()
        self._upgrades = UpgradeTracker(self._patcher, self._clock_ms, self._retire)
        peerstore = None
        try:
            peerstore = host.get_peerstore()
        except Exception:
            logger.debug("introspector: host has no peerstore")
        self._registry = ConnectionRegistry(
            patcher=self._patcher,
            clock_ms=self._clock_ms,
            emitter=self._events,
            upgrades=self._upgrades,
            lifetime_ms=closed_connection_lifetime_ms,
            peerstore=peerstore,
            use_created_at=clock_ms is None,
        )
        self._protocols = ProtocolTracker()
        self._registry.stream_released.append(self._protocols.on_stream_released)
        self._peerstore = peerstore
        self._encoder = IncrementalEncoder(
            self._registry.touched,
            self._registry.moved,
            self._registry.reported,
            self._protocols,
            peerstore,
        )
        self._registry.connection_released.append(self._encoder.forget)
        self._registry.stream_released.append(self._encoder.release_stream)
        self._resources = ResourceTracker(self._swarm, self._patcher)
        self._dht: DhtTracker | None = None
        if dht is not None:
            self._dht = DhtTracker(
                dht,
                patcher=self._patcher,
                clock_ms=self._clock_ms,
                emitter=self._events,
                registry=self._registry,
                start_ts=self._attach_ts,
            )
        self._pubsub: PubsubTracker | None = None
        if pubsub is not None:
            self._pubsub = PubsubTracker(
                pubsub, patcher=self._patcher, emitter=self._events, local_peer=self.peer_id
            )
        self._identify = IdentifyTracker(self._events, peerstore)
        self._identify.follow_releases(self._registry.connection_released)
        self._node_info = NodeTracker(
            host, emitter=self._events, patcher=self._patcher, identify=self._identify,
            autonat=autonat,
        )  # fmt: skip
        #: The application's own event types, events and tags (:class:`ApplicationData`).
        self.application = ApplicationData(
            self._swarm, self._registry, self._events, self._clock_ms, self.runtime_changed
        )
        self._notifee = _Notifee(self)
        self._attached = False
        self._attach()

    # ---------------------------------------------------------- attach/detach

    def _attach(self) -> None:
        self._attached = True
        _ATTACHED[self._swarm] = self
        self._guard(self._upgrades.attach, tp.SWARM_UPGRADER.get(self._swarm))
        self._swarm.register_notifee(self._notifee)
        self._guard(self._registry.adopt_existing, self._swarm)
        self._guard(self._identify.attach, self._registry.stream_listeners)
        self._guard(self._node_info.attach)
        self._guard(self._resources.attach)
        if self._dht is not None:
            self._guard(self._dht.attach)
        if self._pubsub is not None:
            self._guard(self._pubsub.attach)

    @property
    def attached(self) -> bool:
        """Whether the hooks are installed."""
        return self._attached

    @property
    def peer_id(self) -> str:
        """The host's peer id, base58."""
        return str(self._host.get_id().to_base58())

    def detach(self) -> None:
        """Remove every hook this introspector installed (idempotent).

        Snapshots still work afterwards but no longer change, and no more
        events are emitted.
        """
        if not self._attached:
            return
        self._attached = False
        if _ATTACHED.get(self._swarm) is self:
            del _ATTACHED[self._swarm]
        try:
            remove = getattr(self._swarm, "remove_notifee", None)
            notifees = tp.SWARM_NOTIFEES.get(self._swarm, []) if not callable(remove) else []
            if callable(remove):
                remove(self._notifee)
            elif self._notifee in notifees:
                notifees.remove(self._notifee)
        except Exception:
            logger.exception("introspector: could not remove notifee")
        # Not _guard: it runs nothing once detached (the DHT tracker's detach never ran).
        parts: list[tuple[str, Callable[[], None]]] = [
            ("identify", lambda: self._identify.detach(self._registry.stream_listeners)),
            ("node", self._node_info.detach),
        ]
        if self._dht is not None:
            parts.insert(0, ("DHT", self._dht.detach))
        if self._pubsub is not None:
            parts.append(("pubsub", self._pubsub.detach))
        for name, detach in parts:
            try:
                detach()
            except Exception:
                logger.exception("introspector: could not detach the %s tracker", name)
        self._patcher.restore_all()
        self._events.set_sink(None)

    def __enter__(self) -> HostIntrospector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` if attached; log and swallow any exception."""
        if not self._attached:
            return None
        try:
            return fn(*args)
        except Exception:
            logger.exception("introspector: %s failed", getattr(fn, "__name__", fn))
            return None

    def _retire(self, counter: TrafficCounter) -> None:
        self._registry.retire(counter)

    # ------------------------------------------------------ IntrospectionSource

    def runtime(self) -> pb.Runtime:
        """Static node metadata and every event type this introspector emits (the
        application's declared ones last).

        ``implementation`` "py-libp2p"; ``version`` the installed libp2p
        package version; ``platform`` OS and Python; ``peer_id`` base58.
        """
        specs = self._events.specs + self.application.specs
        return build_runtime(IMPLEMENTATION, self.peer_id, specs)

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Register the synchronous event sink (``None`` removes it).

        The sink is called inline from libp2p callbacks; exceptions from it
        are logged, never propagated.
        """
        self._events.set_sink(sink)

    def state(self) -> pb.State:
        """One snapshot (:meth:`encoded_state`, parsed; see :meth:`_state_from_scratch`
        for what it holds)."""
        if not self._incremental:
            return self._state_from_scratch()
        return pb.State.FromString(self.encoded_state())

    def encoded_state(self) -> bytes:
        """One snapshot, serialized (the server's path): the bytes of :meth:`state`.

        Incremental (unless constructed with ``incremental=False``): each retained
        connection's bytes are kept from the last snapshot and only what moved is
        encoded again (:mod:`~libp2p_introspection.introspector.encoder`), then the
        ``State`` is assembled. A sliced build (:meth:`encoded_state_async`) paused
        half-way is finished first.
        """
        if not self._incremental:
            return self._state_from_scratch().SerializeToString()
        self._finish_pending()
        return self._build().finish()

    async def encoded_state_async(self) -> bytes:
        """:meth:`encoded_state` on the node's trio loop, in slices: it yields to the
        node's other tasks (``trio.sleep(0)``) whenever it has worked for
        :data:`SLICE_SECONDS` (1 ms), so that a snapshot of thousands of connections
        never blocks the node for longer. The registry may change between slices: each
        connection is described whole, from its values when its turn comes.

        Cancelled (or failing) half-way, it finishes the snapshot before it lets go (at
        once, without yielding: what it keeps between snapshots stays whole) and drops it.
        """
        if not self._incremental:
            return self.encoded_state()
        return b"".join(await self._build_pieces_async())

    def take_snapshot(self, outlet: SourceOutlet) -> bool:
        """:meth:`SampledSource.take_snapshot`, the same frame, made in one copy: the
        ``State``'s pieces, with the ``ServerMessage`` around them, are joined once
        under the header and hashed (FNV-1a) from the copy while it is in the cache
        (``_snapcode.frame``). Without the C accelerator, or built from scratch
        (``incremental=False``), the base class's path."""
        snapcode = _accel.snapcode
        if snapcode is None or not self._incremental:
            return super().take_snapshot(outlet)
        started = time.perf_counter()
        try:
            self._finish_pending()
            pieces = self._build().finish_pieces()
        except Exception:
            self.snapshot_errors += 1
            source_log.exception("the source failed to build a snapshot")
            return False
        self.snapshot_builds += 1
        self.snapshot_build_seconds += time.perf_counter() - started
        try:
            message, _ = _frame_pieces(pieces)
        except FrameTooLargeError as exc:
            return self.snapshot_too_large(exc)
        del pieces
        outlet.publish_snapshot(snapcode.frame(message, PROTOCOL_VERSION))
        return True

    async def take_snapshot_async(self, outlet: SourceOutlet) -> bool:
        """:meth:`SampledSource.take_snapshot_async`, the same frame: the build in
        slices (:meth:`encoded_state_async`), then the FNV-1a over the ``State``'s
        pieces where they lie, :data:`HASH_SLICE_BYTES` at a time with the node's
        other tasks let in between (so no step is long, whatever the frame's size),
        then one copy into the frame. Without the C accelerator, or built from
        scratch, the base class's path."""
        snapcode = _accel.snapcode
        if snapcode is None or not self._incremental:
            return await super().take_snapshot_async(outlet)
        started = time.perf_counter()
        try:
            pieces = await self._build_pieces_async()
        except Exception:
            self.snapshot_errors += 1
            source_log.exception("the source failed to build a snapshot")
            return False
        self.snapshot_builds += 1
        self.snapshot_build_seconds += time.perf_counter() - started
        await trio.sleep(0)
        try:
            message, size = _frame_pieces(pieces)
        except FrameTooLargeError as exc:
            return self.snapshot_too_large(exc)
        del pieces
        checksum = 0x811C9DC5
        first = 0
        while first < len(message):
            last, taken = first, 0
            while last < len(message) and (taken < HASH_SLICE_BYTES or last == first):
                taken += len(message[last])
                last += 1
            checksum = snapcode.fnv1a32(message[first:last], checksum)
            first = last
            await trio.sleep(0)
        outlet.publish_snapshot(_joined_frame(message, size, checksum))
        return True

    async def _build_pieces_async(self) -> list[bytes]:
        """:meth:`encoded_state_async`, as the pieces of the bytes."""
        self._finish_pending()
        build = self._pending = self._build()
        began = time.perf_counter()
        try:
            for _ in build.steps:
                if time.perf_counter() - began >= SLICE_SECONDS:
                    await trio.sleep(0)
                    if self._pending is not build:  # a synchronous call finished it
                        return build.pieces
                    began = time.perf_counter()
            self._pending = None
            return build.pieces
        finally:
            if self._pending is build:
                self._finish_pending()

    def _finish_pending(self) -> None:
        build, self._pending = self._pending, None
        if build is not None:
            build.finish()

    def _build(self) -> _Build:
        build = _Build()
        build.steps = self._incremental_steps(build)
        return build

    def _incremental_steps(self, build: _Build) -> Iterator[None]:
        """Build one snapshot into ``build.result``, yielding between slices of work."""
        now = self._clock_ms()
        start = self._last_instant
        window = max(0, now - start)
        state = pb.State(
            instant_ts=now, start_ts=start, snapshot_duration_ms=min(window, 2**32 - 1)
        )
        subsystems = pb.Subsystems()
        if self._attached:
            try:
                yield from self._registry.reconcile_steps(self._swarm)
            except Exception:
                logger.exception("introspector: reconcile failed")
        try:
            self._registry.purge(now)
        except Exception:
            logger.exception("introspector: purge failed")
        records = list(self._registry.connections())
        try:
            self._identify.prune(records)
        except Exception:
            logger.exception("introspector: identify snapshot failed")
        yield
        encoder = self._encoder
        streams = encoder.begin()
        connections: list[bytes] = []
        try:
            for first in range(0, len(streams), SLICE_STREAMS_C):
                left = encoder.encode_streams_in_c(
                    streams[first : first + SLICE_STREAMS_C], window
                )
                for at in range(0, len(left), SLICE_STREAMS):
                    encoder.encode_streams(left[at : at + SLICE_STREAMS], window, in_c=False)
                    yield
                yield
            encode_for = encoder.encode_for
            peer_field = self._identify.peer_field
            peer_fields = self._identify.peer_fields
            first = 0
            while first < len(records):
                done, first = encode_for(
                    records, first, SLICE_BUDGET_NS, window, peer_field,
                    self._describe_failed, peer_fields,
                )  # fmt: skip
                connections += done
                yield
        except BaseException:
            # What begin() took would otherwise never be looked at again until it moves.
            encoder.abandon(records, streams)
            raise
        try:
            self._node_info.fill(state.node)
        except Exception:
            logger.exception("introspector: node snapshot failed")
        try:
            self._protocols.fill_live(state.protocols, window)
        except Exception:
            logger.exception("introspector: per-protocol traffic failed")
        try:
            in_b, in_p, out_b, out_p = encoder.connection_totals()
            retired = self._registry.retired
            node = self._node
            node.in_bytes = max(node.in_bytes, retired.in_bytes + in_b)
            node.in_packets = max(node.in_packets, retired.in_packets + in_p)
            node.out_bytes = max(node.out_bytes, retired.out_bytes + out_b)
            node.out_packets = max(node.out_packets, retired.out_packets + out_p)
            node.to_pb(state.traffic, window)
        except Exception:
            logger.exception("introspector: node traffic failed")
            state.traffic.traffic_in.SetInParent()
            state.traffic.traffic_out.SetInParent()
        yield
        self._fill_subsystems(subsystems, now, window)
        self._last_instant = now
        yield
        build.pieces = state_pieces(
            state.SerializeToString(), connections, subsystems.SerializeToString()
        )

    @staticmethod
    def _describe_failed() -> None:
        logger.exception("introspector: could not describe a connection")

    def _fill_subsystems(self, subsystems: pb.Subsystems, now: int, window: int) -> None:
        """The resource manager, DHT and pubsub parts of ``State.subsystems``."""
        try:
            self._resources.fill(subsystems, hook=self._attached)
        except Exception:
            logger.exception("introspector: resource manager snapshot failed")
        if self._dht is not None:
            try:
                self._dht.fill(subsystems.dht, now)
            except Exception:
                logger.exception("introspector: DHT snapshot failed")
        if self._pubsub is not None:
            try:
                self._pubsub.fill(subsystems.pubsub, window)
            except Exception:
                logger.exception("introspector: pubsub snapshot failed")

    def _state_from_scratch(self) -> pb.State:
        """One snapshot: every retained connection with its streams, node traffic,
        per-protocol traffic (:mod:`~libp2p_introspection.introspector.protocols`), the
        resource manager (:mod:`~libp2p_introspection.introspector.resources`), DHT, pubsub
        (:mod:`~libp2p_introspection.introspector.pubsub`).

        ``instant_ts`` = now; ``start_ts`` = the previous call's ``instant_ts``
        (the attach time for the first call); ``snapshot_duration_ms`` =
        their difference, the window of every ``inst_bw``.
        """
        now = self._clock_ms()
        start = self._last_instant
        window = max(0, now - start)
        state = pb.State(
            instant_ts=now, start_ts=start, snapshot_duration_ms=min(window, 2**32 - 1)
        )
        state.subsystems.SetInParent()
        if self._attached:
            self._guard(self._registry.reconcile, self._swarm)
        try:
            self._registry.purge(now)
        except Exception:
            logger.exception("introspector: purge failed")
        self._registry.fill(state.subsystems.connections, window)
        try:
            self._identify.fill(state.subsystems.connections, self._registry.connections())
        except Exception:
            logger.exception("introspector: identify snapshot failed")
        try:
            self._node_info.fill(state.node)
        except Exception:
            logger.exception("introspector: node snapshot failed")
        try:
            self._protocols.fill(state.protocols, self._registry.connections(), window)
        except Exception:
            logger.exception("introspector: per-protocol traffic failed")
        try:
            total = self._registry.node_traffic()
            node = self._node
            node.in_bytes = max(node.in_bytes, total.in_bytes)
            node.in_packets = max(node.in_packets, total.in_packets)
            node.out_bytes = max(node.out_bytes, total.out_bytes)
            node.out_packets = max(node.out_packets, total.out_packets)
            node.to_pb(state.traffic, window)
        except Exception:
            logger.exception("introspector: node traffic failed")
            state.traffic.traffic_in.SetInParent()
            state.traffic.traffic_out.SetInParent()
        self._fill_subsystems(state.subsystems, now, window)
        self._last_instant = now
        return state
