"""Kademlia DHT introspection for a py-libp2p ``KadDHT``.

Routing table: :class:`~libp2p_introspection.introspector.dht_table.RoutingTableView`
(peers by common prefix length, ACTIVE or MISSING, age in bucket).

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
  in them (:class:`~libp2p_introspection.introspector.dht_inbound.RequestReader`):
  each request's message type, key, and the time its first byte was read (the
  event's ``ts``). Each request that
  py-libp2p handled to completion is one **SUCCESS**, timed up to that
  moment: the handler reports it on ``stream.metric_send_channel``, which the
  wrapper taps for the duration of the call. A request read but never
  answered (malformed, rejected, reset) is one **ERROR**, and so are the
  bytes of a request cut short. Inbound queries have no timeout in py-libp2p.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.peer.id import ID

from libp2p_introspection.introspector import conninfo
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.connections import ConnectionRegistry, StreamRecord
from libp2p_introspection.introspector.dht_inbound import (
    InboundRequest,
    MetricTap,
    RequestReader,
    inbound_type,
)
from libp2p_introspection.introspector.dht_table import RoutingTableView, peer_str
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.touchpoints import Touchpoint
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.clock import MonotonicS
from libp2p_introspection.protocol.dht import (
    API,
    CANCELLED,
    DISCOVERY,
    ERROR,
    INBOUND,
    OUTBOUND,
    SUCCESS,
    TIMEOUT,
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


class DhtTracker:
    """Observes one ``KadDHT``: routing table, query counters and query events.

    :param dht: a ``libp2p.kad_dht.kad_dht.KadDHT``.
    :param start_ts: reported as ``DHT.start_ts`` (ms since epoch): the attach time.
    :param monotonic: the clock query durations are measured on (seconds; a query's
        ``totalTimeMs``, and whether a cancelled one timed out): ``time.monotonic``
        unless a test fakes it.
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
        monotonic: MonotonicS = time.monotonic,
    ) -> None:
        self._dht = dht
        self._monotonic = monotonic
        self._patcher = patcher
        self._clock_ms = clock_ms
        self._emitter = emitter
        self._registry = registry
        self.start_ts = start_ts
        self.incoming = QueryCounts()
        self.outgoing = QueryCounts()
        #: The routing table, by cpl (its own add_peer wrapper).
        self.table = RoutingTableView(dht, patcher=patcher, clock_ms=clock_ms)
        self._active = False

    # ------------------------------------------------------------- attaching

    def attach(self) -> None:
        """Install the wrappers and note the peers already in the routing table."""
        dht = self._dht
        self._active = True
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
        self.table.attach(self.start_ts)
        self._registry.stream_listeners.append(self._link_stream)

    def detach(self) -> None:
        """Stop observing (the wrappers themselves are restored by the shared patcher)."""
        self._active = False
        self.table.detach()
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
            clock = self._monotonic
            started = clock()
            result: str = ERROR
            try:
                value = await original(*args, **kwargs)
            except trio.Cancelled:
                elapsed = clock() - started
                result = TIMEOUT if elapsed >= timeout_s * 0.95 else CANCELLED
                raise
            except BaseException:
                result = ERROR
                raise
            else:
                elapsed = clock() - started
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
                    peer, message_type, key, trigger, result, sent_ts, clock() - started
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
                peer=peer_str(peer),
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
            entered = (self._clock_ms(), self._monotonic())
            reader = RequestReader(self._clock_ms, max_size, self._monotonic)
            record: StreamRecord | None = None
            tap: MetricTap | None = None
            inner: Any = None
            reported = [0]  # requests reported so far

            def on_send(value: Any) -> None:
                # py-libp2p handled one request to completion (it answers them in order).
                if reader.complete:
                    request = reader.complete.popleft()
                else:  # its bytes were not seen: name it from py-libp2p's own report
                    request = InboundRequest(*entered, message_type=inbound_type(value))
                reported[0] += 1
                self._inbound_done(peer, request, SUCCESS)

            try:
                record = self._registry.stream_record(stream) or self._registry.on_stream_opened(
                    stream
                )
                if record is not None:
                    record.traffic.observer = reader.feed
                inner = tp.STREAM_METRIC_CHANNEL.get(stream)
                tap = MetricTap(inner, on_send)
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
            total_time_ms=round((self._monotonic() - request.started) * 1000),
            trigger=API,
            result=result,
            query_id=new_query_id(),
        )
        self._emitter.emit(events.INBOUND_DHT_QUERY, content, ts=request.received_ts)

    # -------------------------------------------------------------- snapshot

    def fill(self, msg: pb.DHT, now: int) -> None:
        """Fill ``pb.DHT`` for a snapshot taken at ``now`` (ms since epoch)."""
        dht = self._dht
        msg.protocol = str(tp.constant(tp.KAD_PROTOCOL, "/ipfs/kad/1.0.0"))
        msg.enabled = _is_running(dht)
        msg.start_ts = self.start_ts
        msg.params.SetInParent()
        msg.params.alpha = int(tp.constant(tp.KAD_ALPHA, 10))
        msg.params.beta = int(tp.constant(tp.KAD_BETA, 0))
        msg.params.disjoint_paths = 0
        self.table.fill(msg, now)
        self.incoming.to_pb(msg.incoming_queries)
        self.outgoing.to_pb(msg.outgoing_queries)


def _is_running(dht: Any) -> bool:
    try:
        return bool(tp.DHT_MANAGER.get(dht)().is_running)
    except Exception:
        return False
