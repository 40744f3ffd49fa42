"""Kademlia DHT introspection for a py-libp2p ``KadDHT``.

Routing table: read at snapshot time from ``KadDHT.routing_table.buckets``
(py-libp2p ``KBucket`` objects holding ``peer_id -> (PeerInfo, last_seen)``).
Peers are regrouped by **common prefix length** (cpl) between our Kademlia key
and theirs, where a key is ``sha256(peer_id.to_bytes())`` as in
``libp2p.kad_dht.routing_table.peer_id_to_key``. A peer is ACTIVE, or MISSING
when its ``last_seen`` is older than py-libp2p's ``STALE_PEER_THRESHOLD``.
``age_in_bucket`` (ms) counts from when the introspector first saw the peer in
the table: the moment ``RoutingTable.add_peer`` returned for it, or the
attach time for peers already present.

Queries are counted, and reported as one ``InboundDHTQuery`` /
``OutboundDHTQuery`` event per RPC (content keys: PROTOCOL.md §3 and
:data:`~libp2p_introspection.protocol.events.DHT_QUERY_PROPERTIES`), by
instance-level wrappers (restored on detach):

* outgoing: the five methods through which py-libp2p 0.8.1 sends every
  Kademlia RPC, one call = one query:
  ``peer_routing._query_peer_for_closest`` (FIND_NODE),
  ``value_store._get_from_peer`` (GET_VALUE), ``value_store._store_at_peer``
  (PUT_VALUE), ``provider_store._get_providers_from_peer_with_closers``
  (GET_PROVIDERS) and ``provider_store._send_add_provider`` (ADD_PROVIDER).
  The event's ``ts`` is when the call started, ``totalTimeMs`` how long it
  ran, ``targetPeerId`` the key it was given (base58 for FIND_NODE, hex
  otherwise). These methods swallow their own errors and time out silently,
  so the outcome is decided from what actually happened on the wire: the
  wrapper marks the call in a context variable, the stream the call opens is
  linked to it (the swarm's ``opened_stream`` notifee runs in a child of the
  calling task, so it sees the variable), and the call is a **SUCCESS** if a
  response byte arrived on that stream (or it returned ``True``), a
  **TIMEOUT** if it ran for at least ``QUERY_TIMEOUT``, an **ERROR**
  otherwise (or if it raised or returned ``False``). A call cancelled by its
  caller before the timeout (for example a GET_VALUE abandoned once quorum
  was reached) emits no event and is not counted. Calls addressed to
  ourselves never touch the network and are not counted.
* the trigger: py-libp2p's routing-table refresh entry points
  (``KadDHT.refresh_routing_table``, which its own maintenance loop calls,
  ``PeerRouting.refresh_routing_table`` and, with random walk on,
  ``RTRefreshManager._do_refresh``, which its periodic and on-demand
  refreshes call) are wrapped to mark the task running them in a second
  context variable; every RPC sent from inside one (the child tasks of its
  lookups inherit the variable) is ``DISCOVERY``, every other one ``API``.
  Inbound requests are ``API``: a request does not say why it was sent.
* incoming: ``KadDHT._do_handle_stream`` (one call per inbound Kademlia
  stream). For that call the stream's traffic counter hands the wrapper every
  chunk py-libp2p reads, and the wrapper follows the varint-framed requests
  in them (:class:`RequestReader`): each request's message type, key, and
  the time its first byte was read (the event's ``ts``). Each request that
  py-libp2p handled to completion is one **SUCCESS**, timed up to that
  moment: the handler reports it on ``stream.metric_send_channel``, which the
  wrapper taps for the duration of the call. A request read but never
  answered (malformed, rejected, reset) is one **ERROR**, and so are the
  bytes of a request cut short. Inbound queries have no timeout in py-libp2p.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID

from libp2p_introspection.introspector import conninfo
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.connections import ConnectionRegistry, StreamRecord
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.touchpoints import Touchpoint
from libp2p_introspection.protocol import events, pb, protowire
from libp2p_introspection.protocol.dht import (
    API,
    CANCELLED,
    DISCOVERY,
    ERROR,
    INBOUND,
    OUTBOUND,
    SUCCESS,
    TIMEOUT,
    UNKNOWN,
    QueryCounts,
    new_query_id,
    query_content,
)
from libp2p_introspection.protocol.events import EventEmitter

logger = logging.getLogger(__name__)

#: (KadDHT attribute holding the owner, the owner's method, the Kademlia message it sends)
OUTBOUND_METHODS: tuple[tuple[Touchpoint, Touchpoint, str], ...] = (
    (tp.DHT_PEER_ROUTING, tp.PEER_ROUTING_QUERY, "FIND_NODE"),
    (tp.DHT_VALUE_STORE, tp.VALUE_GET, "GET_VALUE"),
    (tp.DHT_VALUE_STORE, tp.VALUE_PUT, "PUT_VALUE"),
    (tp.DHT_PROVIDER_STORE, tp.PROVIDERS_GET, "GET_PROVIDERS"),
    (tp.DHT_PROVIDER_STORE, tp.PROVIDER_ADD, "ADD_PROVIDER"),
)

#: (KadDHT attribute holding the owner, or ``None`` for KadDHT itself, the method):
#: py-libp2p's routing-table refresh entry points; an RPC sent while one runs is a
#: ``DISCOVERY``.
REFRESH_METHODS: tuple[tuple[Touchpoint | None, Touchpoint], ...] = (
    (None, tp.DHT_REFRESH),
    (tp.DHT_PEER_ROUTING, tp.PEER_ROUTING_REFRESH),
    (tp.DHT_RT_REFRESH, tp.RT_REFRESH_DO),
)

#: ``KadDhtEvent`` flag -> message name, for an inbound request whose bytes were not seen.
_INBOUND_FLAGS: tuple[tuple[Touchpoint, str], ...] = tuple(
    zip(tp.EVENT_FLAGS, ("FIND_NODE", "GET_VALUE", "PUT_VALUE", "GET_PROVIDERS", "ADD_PROVIDER"),
        strict=True)
)  # fmt: skip

#: Bytes of a request body kept to read its type and key (fields 1 and 2, which
#: protobuf writes first); a longer body (a big PUT_VALUE) is not kept whole.
_KEPT_REQUEST_BYTES = 4096


def target_string(message_type: str, key: bytes | str | None) -> str:
    """The event's ``targetPeerId``: the base58 form of a FIND_NODE key (a peer id's
    bytes), the hex of any other key; "" without a key."""
    if key is None:
        return ""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if message_type == "FIND_NODE" and raw:
        return str(ID(raw).to_base58())
    return raw.hex()


@dataclass
class _Probe:
    """Streams opened while one outbound query call runs."""

    streams: list[StreamRecord] = field(default_factory=list)

    def responded(self) -> bool:
        return any(s.traffic.in_bytes > 0 for s in self.streams)


_CURRENT_QUERY: contextvars.ContextVar[_Probe | None] = contextvars.ContextVar(
    "libp2p_introspection_dht_query", default=None
)
#: ``DISCOVERY`` while a routing-table refresh runs (in its task and its children).
_TRIGGER: contextvars.ContextVar[str] = contextvars.ContextVar(
    "libp2p_introspection_dht_trigger", default=API
)


@dataclass
class InboundRequest:
    """One Kademlia request read from an inbound stream.

    ``received_ts``: ms since epoch when its first byte was read; ``started``:
    ``time.monotonic()`` then; ``message_type``: the message name (``UNKNOWN``
    until the whole request was read); ``key``: its ``key`` field, if read.
    """

    received_ts: int
    started: float
    message_type: str = UNKNOWN
    key: bytes | None = None


class RequestReader:
    """Follows the varint-length-prefixed Kademlia requests in the bytes of one stream.

    Sans-I/O: :meth:`feed` takes the chunks py-libp2p read, in order;
    complete requests queue up in :attr:`complete` (oldest first), the one
    being read is :attr:`partial`. A request's body is kept up to
    ``_KEPT_REQUEST_BYTES`` to read its ``type`` (field 1) and ``key``
    (field 2); a length prefix over ``max_size`` or longer than 10 bytes (which
    py-libp2p refuses too) stops the reading, leaving that request partial.
    """

    def __init__(self, clock_ms: Callable[[], int], max_size: int) -> None:
        self._clock_ms = clock_ms
        self._max_size = max_size
        self.complete: deque[InboundRequest] = deque()
        self.partial: InboundRequest | None = None
        self._prefix = bytearray()
        self._length: int | None = None
        self._body = bytearray()
        self._read = 0
        self._broken = False

    def feed(self, data: bytes) -> None:
        """Account for one chunk read from the stream."""
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self._broken:
            if self.partial is None:
                self.partial = InboundRequest(self._clock_ms(), time.monotonic())
            if self._length is None:
                byte = view[pos]
                pos += 1
                self._prefix.append(byte)
                if byte & 0x80:
                    if len(self._prefix) >= 10:
                        self._broken = True
                    continue
                self._length, _ = protowire.read_varint(bytes(self._prefix), 0, len(self._prefix))
                if self._length > self._max_size:
                    self._broken = True
                    continue
            else:
                take = min(len(view) - pos, self._length - self._read)
                room = _KEPT_REQUEST_BYTES - len(self._body)
                if room > 0:
                    self._body += view[pos : pos + min(take, room)]
                self._read += take
                pos += take
            if self._length is not None and self._read == self._length:
                self._finish()

    def _finish(self) -> None:
        request = self.partial
        assert request is not None
        body = bytes(self._body)
        if self._read <= _KEPT_REQUEST_BYTES:
            # The whole request: parse it as py-libp2p does (malformed stays UNKNOWN).
            try:
                message = Message.FromString(body)
            except Exception:
                pass
            else:
                request.message_type = _message_name(message.type)
                request.key = message.key
        else:
            # A long request (a big PUT_VALUE): its type and key come first on the wire.
            message_type = 0  # proto3: an absent type is its zero value, as py-libp2p reads it
            try:
                for number, wire_type, value, begin, end in protowire.iter_fields(body):
                    if number == 1 and wire_type == protowire.VARINT:
                        message_type = value
                    elif number == 2 and wire_type == protowire.LENGTH_DELIMITED:
                        request.key = body[begin:end]
            except protowire.WireError:
                pass  # cut at the kept length: keep what was read
            request.message_type = _message_name(message_type)
        self.complete.append(request)
        self.partial = None
        self._prefix.clear()
        self._length = None
        self._body.clear()
        self._read = 0


@dataclass
class _PeerSeen:
    first_seen_ms: int
    cpl: int


class _MetricTap:
    """Stands in for ``NetStream.metric_send_channel`` during one inbound handler call.

    Reports each value sent to ``on_send`` and forwards it to the original
    channel, if there was one.
    """

    def __init__(self, inner: Any, on_send: Callable[[Any], None]) -> None:
        self._inner = inner
        self._on_send = on_send

    async def send(self, value: Any) -> None:
        try:
            self._on_send(value)
        except Exception:
            logger.exception("introspector: inbound DHT accounting failed")
        if self._inner is not None:
            await self._inner.send(value)

    def __getattr__(self, name: str) -> Any:
        if self._inner is None:
            raise AttributeError(name)
        return getattr(self._inner, name)


def kad_key(peer_id: Any) -> bytes:
    """A peer's 256-bit Kademlia key: ``sha256(peer_id.to_bytes())``, as ``peer_id_to_key``."""
    return hashlib.sha256(peer_id.to_bytes()).digest()


def common_prefix_len(a: bytes, b: bytes) -> int:
    """Number of leading bits ``a`` and ``b`` share."""
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    bits = len(a) * 8
    return bits if x == 0 else bits - x.bit_length()


class DhtTracker:
    """Observes one ``KadDHT``: routing table, query counters and query events.

    :param dht: a ``libp2p.kad_dht.kad_dht.KadDHT``.
    :param start_ts: reported as ``DHT.start_ts`` (ms since epoch): the attach time.
    """

    def __init__(
        self,
        dht: Any,
        *,
        patcher: InstancePatcher,
        clock_ms: Callable[[], int],
        emitter: EventEmitter,
        registry: ConnectionRegistry,
        start_ts: int,
    ) -> None:
        self._dht = dht
        self._patcher = patcher
        self._clock_ms = clock_ms
        self._emitter = emitter
        self._registry = registry
        self.start_ts = start_ts
        self.incoming = QueryCounts()
        self.outgoing = QueryCounts()
        self._peers: dict[Any, _PeerSeen] = {}
        self._local_key = b""
        self._active = False

    # ------------------------------------------------------------- attaching

    def attach(self) -> None:
        """Install the wrappers and note the peers already in the routing table."""
        dht = self._dht
        self._active = True
        try:
            self._local_key = kad_key(tp.DHT_LOCAL_PEER.get(dht))
        except Exception:
            logger.exception("introspector: DHT has no local peer id")
        for holder, method, message_type in OUTBOUND_METHODS:
            method.hook(
                self._patcher,
                holder.get(dht),
                lambda original, kind=message_type: self._wrap_outbound(original, kind),
                once=False,
            )
        for holder, method in REFRESH_METHODS:
            owner = holder.get(dht) if holder is not None else dht
            method.hook(self._patcher, owner, self._wrap_refresh, once=False)
        tp.DHT_HANDLE_STREAM.hook(self._patcher, dht, self._wrap_inbound, once=False)
        tp.TABLE_ADD_PEER.hook(
            self._patcher, tp.DHT_ROUTING_TABLE.get(dht), self._wrap_add_peer, once=False
        )
        self._registry.stream_listeners.append(self._link_stream)
        self._refresh_peers(self.start_ts)

    def detach(self) -> None:
        """Stop observing (the wrappers themselves are restored by the shared patcher)."""
        self._active = False
        with contextlib.suppress(ValueError):
            self._registry.stream_listeners.remove(self._link_stream)

    # -------------------------------------------------------------- outbound

    @staticmethod
    def _link_stream(record: StreamRecord) -> None:
        probe = _CURRENT_QUERY.get()
        if probe is not None:
            probe.streams.append(record)

    def _wrap_refresh(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def refresh(*args: Any, **kwargs: Any) -> Any:
            token = _TRIGGER.set(DISCOVERY)
            try:
                return await original(*args, **kwargs)
            finally:
                _TRIGGER.reset(token)

        return refresh

    def _wrap_outbound(self, original: Callable[..., Any], message_type: str) -> Callable[..., Any]:
        local_id = tp.DHT_LOCAL_PEER.get(self._dht)
        timeout_s = float(tp.constant(tp.KAD_QUERY_TIMEOUT, 10))

        async def outbound_query(*args: Any, **kwargs: Any) -> Any:
            peer = args[0] if args else kwargs.get("peer", kwargs.get("peer_id"))
            if not self._active or peer is None or peer == local_id:
                return await original(*args, **kwargs)
            key = args[1] if len(args) > 1 else kwargs.get("target_key", kwargs.get("key"))
            sent_ts = self._clock_ms()
            trigger = _TRIGGER.get()
            probe = _Probe()
            token = _CURRENT_QUERY.set(probe)
            started = time.monotonic()
            result: str = ERROR
            try:
                value = await original(*args, **kwargs)
            except trio.Cancelled:
                elapsed = time.monotonic() - started
                result = TIMEOUT if elapsed >= timeout_s * 0.95 else CANCELLED
                raise
            except BaseException:
                result = ERROR
                raise
            else:
                elapsed = time.monotonic() - started
                if value is False:
                    result = ERROR
                elif value is True or probe.responded():
                    result = SUCCESS
                elif elapsed >= timeout_s * 0.95:
                    result = TIMEOUT
                else:
                    result = ERROR
                return value
            finally:
                _CURRENT_QUERY.reset(token)
                self._outbound_done(
                    peer, message_type, key, trigger, result, sent_ts, time.monotonic() - started
                )

        return outbound_query

    def _outbound_done(
        self,
        peer: Any,
        message_type: str,
        key: Any,
        trigger: str,
        result: str,
        sent_ts: int,
        elapsed_s: float,
    ) -> None:
        if result == CANCELLED:
            return
        try:
            self.outgoing.count(result)
            content = query_content(
                direction=OUTBOUND,
                peer=_peer_str(peer),
                message_type=message_type,
                target=target_string(message_type, key),
                total_time_ms=round(elapsed_s * 1000),
                trigger=trigger,
                result=result,
                query_id=new_query_id(),
            )
            self._emitter.emit(events.OUTBOUND_DHT_QUERY, content, ts=sent_ts)
        except Exception:
            logger.exception("introspector: outbound DHT accounting failed")

    # --------------------------------------------------------------- inbound

    def _wrap_inbound(self, original: Callable[..., Any]) -> Callable[..., Any]:
        max_size = int(tp.constant(tp.KAD_MAX_MESSAGE, 4 * 1024 * 1024))

        async def do_handle_stream(stream: Any, *args: Any, **kwargs: Any) -> Any:
            if not self._active:
                return await original(stream, *args, **kwargs)
            peer = conninfo.peer_id_str(stream)
            entered = (self._clock_ms(), time.monotonic())
            reader = RequestReader(self._clock_ms, max_size)
            record: StreamRecord | None = None
            tap: _MetricTap | None = None
            inner: Any = None
            reported = [0]  # requests reported so far

            def on_send(value: Any) -> None:
                # py-libp2p handled one request to completion (it answers them in order).
                if reader.complete:
                    request = reader.complete.popleft()
                else:  # its bytes were not seen: name it from py-libp2p's own report
                    request = InboundRequest(*entered, message_type=_inbound_type(value))
                reported[0] += 1
                self._inbound_done(peer, request, SUCCESS)

            try:
                record = self._registry.stream_record(stream) or self._registry.on_stream_opened(
                    stream
                )
                if record is not None:
                    record.traffic.observer = reader.feed
                inner = tp.STREAM_METRIC_CHANNEL.get(stream)
                tap = _MetricTap(inner, on_send)
                tp.STREAM_METRIC_CHANNEL.set(stream, tap)
            except Exception:
                logger.exception("introspector: could not hook inbound DHT stream")
            failed = False
            try:
                return await original(stream, *args, **kwargs)
            except trio.Cancelled:
                raise
            except BaseException:
                failed = True
                raise
            finally:
                try:
                    if record is not None and record.traffic.observer == reader.feed:
                        record.traffic.observer = None
                    if tap is not None and tp.STREAM_METRIC_CHANNEL.get(stream) is tap:
                        tp.STREAM_METRIC_CHANNEL.set(stream, inner)
                    unanswered = list(reader.complete)
                    if reader.partial is not None:
                        unanswered.append(reader.partial)
                    if failed and not unanswered and not reported[0]:
                        unanswered.append(InboundRequest(*entered))
                    for request in unanswered:
                        self._inbound_done(peer, request, ERROR)
                except Exception:
                    logger.exception("introspector: inbound DHT accounting failed")

        return do_handle_stream

    def _inbound_done(self, peer: str, request: InboundRequest, result: str) -> None:
        if not self._active:
            return
        self.incoming.count(result)
        content = query_content(
            direction=INBOUND,
            peer=peer,
            message_type=request.message_type,
            target=target_string(request.message_type, request.key),
            total_time_ms=round((time.monotonic() - request.started) * 1000),
            trigger=API,
            result=result,
            query_id=new_query_id(),
        )
        self._emitter.emit(events.INBOUND_DHT_QUERY, content, ts=request.received_ts)

    # --------------------------------------------------------- routing table

    def _wrap_add_peer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def add_peer(peer_obj: Any, *args: Any, **kwargs: Any) -> Any:
            added = await original(peer_obj, *args, **kwargs)
            try:
                if added and self._active:
                    peer_id = getattr(peer_obj, "peer_id", peer_obj)
                    table = tp.DHT_ROUTING_TABLE.get(self._dht)
                    if peer_id not in self._peers and tp.TABLE_PEER_IN.get(table)(peer_id):
                        self._remember(peer_id, self._clock_ms())
            except Exception:
                logger.exception("introspector: routing table hook failed")
            return added

        return add_peer

    def _remember(self, peer_id: Any, now: int) -> _PeerSeen:
        seen = _PeerSeen(
            first_seen_ms=now, cpl=common_prefix_len(self._local_key, kad_key(peer_id))
        )
        self._peers[peer_id] = seen
        return seen

    def _table(self, now: int) -> list[tuple[Any, float]]:
        """``(peer_id, last_seen seconds since epoch)`` for every peer in every KBucket
        (``now``, ms since epoch, for an entry without a ``last_seen``)."""
        rows: list[tuple[Any, float]] = []
        now_s = now / 1000
        table = tp.DHT_ROUTING_TABLE.get(self._dht)
        for bucket in list(tp.TABLE_BUCKETS.get(table, ())):
            for peer_id, entry in list(tp.BUCKET_PEERS.get(bucket, {}).items()):
                last_seen = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else now_s
                rows.append((peer_id, float(last_seen)))
        return rows

    def _refresh_peers(self, now: int) -> list[tuple[Any, float, _PeerSeen]]:
        rows = self._table(now)
        present = set()
        out: list[tuple[Any, float, _PeerSeen]] = []
        for peer_id, last_seen in rows:
            present.add(peer_id)
            seen = self._peers.get(peer_id) or self._remember(peer_id, now)
            out.append((peer_id, last_seen, seen))
        for peer_id in [p for p in self._peers if p not in present]:
            del self._peers[peer_id]
        return out

    # -------------------------------------------------------------- snapshot

    def fill(self, msg: pb.DHT, now: int) -> None:
        """Fill ``pb.DHT`` for a snapshot taken at ``now`` (ms since epoch)."""
        dht = self._dht
        msg.protocol = str(tp.constant(tp.KAD_PROTOCOL, "/ipfs/kad/1.0.0"))
        msg.enabled = _is_running(dht)
        msg.start_ts = self.start_ts
        msg.params.SetInParent()
        buckets = tp.TABLE_BUCKETS.get(tp.DHT_ROUTING_TABLE.get(dht)) or []
        k = tp.BUCKET_SIZE.get(buckets[0]) if buckets else None
        msg.params.k = int(k if k is not None else tp.constant(tp.KAD_BUCKET_SIZE, 20))
        msg.params.alpha = int(tp.constant(tp.KAD_ALPHA, 10))
        msg.params.beta = int(tp.constant(tp.KAD_BETA, 0))
        msg.params.disjoint_paths = 0
        stale_s = float(tp.constant(tp.KAD_STALE, 3600))
        wall_now = now / 1000  # the injected clock, as py-libp2p's last_seen: seconds
        by_cpl: dict[int, list[pb.DHT.PeerInDHT]] = {}
        for peer_id, last_seen, seen in self._refresh_peers(now):
            peer = pb.DHT.PeerInDHT(
                peer_id=_peer_str(peer_id),
                status=pb.DHT.PeerInDHT.MISSING
                if wall_now - last_seen > stale_s
                else pb.DHT.PeerInDHT.ACTIVE,
                age_in_bucket=min(max(0, now - seen.first_seen_ms), 0xFFFFFFFF),
            )
            by_cpl.setdefault(seen.cpl, []).append(peer)
        for cpl in sorted(by_cpl):
            bucket = msg.buckets.add()
            bucket.cpl = cpl
            bucket.peers.extend(sorted(by_cpl[cpl], key=lambda p: p.peer_id))
        self.incoming.to_pb(msg.incoming_queries)
        self.outgoing.to_pb(msg.outgoing_queries)


def _message_name(number: int) -> str:
    try:
        return str(Message.MessageType.Name(number))
    except ValueError:
        return UNKNOWN


def _inbound_type(value: Any) -> str:
    """The message a ``KadDhtEvent`` reports (py-libp2p flags PING as nothing)."""
    for flag, name in _INBOUND_FLAGS:
        if flag.get(value, False):
            return name
    return "PING"


def _peer_str(peer_id: Any) -> str:
    try:
        return str(peer_id.to_base58())
    except Exception:
        return str(peer_id)


def _is_running(dht: Any) -> bool:
    try:
        return bool(tp.DHT_MANAGER.get(dht)().is_running)
    except Exception:
        return False
