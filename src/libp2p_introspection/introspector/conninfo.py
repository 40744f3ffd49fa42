"""Read static facts about a py-libp2p connection or stream.

Everything here is read from py-libp2p objects, never guessed:

* ``SwarmConn`` (``libp2p.network.connection.swarm_connection``): peer id
  (``muxed_conn.peer_id``), direction (``SwarmConn.direction``, set by the
  swarm from the dial/accept path), negotiated security and muxer protocol
  ids (``get_negotiated_security_protocol()`` /
  ``get_negotiated_muxer_protocol()``), transport family
  (``get_transport_family()``) and the remote address
  (``get_transport_addresses()``).
* The local address comes from the TCP socket under the raw connection
  (``getsockname()``), found by walking the connection's attributes
  (:func:`~libp2p_introspection.introspector.touchpoints.find_in_graph`).

Every py-libp2p attribute read here that no ``libp2p.abc`` interface
declares goes through :mod:`~libp2p_introspection.introspector.touchpoints`.
* Latency: the peerstore's latency EWMA of the peer
  (``peerstore.latency_EWMA(peer)``, seconds), when anything measured it: the
  pings of py-libp2p's connection health monitor (when enabled) or of the
  application (the demo records each ping's RTT there); else the yamux muxer's
  smoothed ping RTT (``Yamux.rtt()``, seconds); else 0 (unknown: mplex, or
  before the first yamux pong). Yamux pings once 0.5 s after the connection
  starts, while identify, the DHT and pubsub all begin their work on it, then
  every 30 s, and halves the distance to each new sample: on a busy process
  the first sample is the event loop's delay of that moment (hundreds of ms on
  loopback) and it takes minutes to fade, which is why pings measured since
  come first.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio
from libp2p.abc import IMuxedConn, IRawConnection, ISecureConn
from libp2p.rcmgr import Direction

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.touchpoints import find_in_graph
from libp2p_introspection.protocol import pb

logger = logging.getLogger(__name__)

def peer_id_str(conn: Any) -> str:
    """Base58 peer id of the remote side of a ``SwarmConn``/``NetStream``'s connection."""
    try:
        return str(conn.muxed_conn.peer_id.to_base58())
    except Exception:
        return ""


def connection_role(conn: Any) -> int:
    """``pb.INITIATOR`` if we dialed the connection, ``pb.RESPONDER`` if the peer dialed us."""
    direction = tp.CONN_DIRECTION.get(conn, Direction.UNKNOWN)
    if direction == Direction.OUTBOUND:
        return pb.INITIATOR
    if direction == Direction.INBOUND:
        return pb.RESPONDER
    muxed = getattr(conn, "muxed_conn", None)
    for candidate in (muxed, tp.MUXER_SECURED_CONN.get(muxed)):
        initiator = getattr(candidate, "is_initiator", None)
        if isinstance(initiator, bool):
            return pb.INITIATOR if initiator else pb.RESPONDER
    return pb.INITIATOR


def stream_role(stream: Any) -> int:
    """``pb.INITIATOR`` if we opened the stream (the muxed stream's ``is_initiator``)."""
    initiator = tp.MUXED_IS_INITIATOR.get(tp.STREAM_MUXED.get(stream))
    if isinstance(initiator, bool):
        return pb.INITIATOR if initiator else pb.RESPONDER
    direction = tp.STREAM_DIRECTION.get(stream, Direction.UNKNOWN)
    return pb.RESPONDER if direction == Direction.INBOUND else pb.INITIATOR


def _is_raw(obj: object) -> bool:
    # ISecureConn extends IRawConnection: we want the transport connection under it.
    return isinstance(obj, IRawConnection) and not isinstance(obj, ISecureConn | IMuxedConn)


def raw_connection_of(conn: Any) -> Any | None:
    """The transport ``IRawConnection`` under a ``SwarmConn``'s security session, if reachable."""
    secured = tp.MUXER_SECURED_CONN.get(getattr(conn, "muxed_conn", None))
    if secured is None:
        return None
    if _is_raw(secured):
        return secured
    return find_in_graph(secured, _is_raw)


def remote_multiaddr(conn: Any) -> str:
    """The remote transport multiaddr (``SwarmConn.get_transport_addresses()[0]``), or ``""``."""
    try:
        addrs = conn.get_transport_addresses()
        return str(addrs[0]) if addrs else ""
    except Exception:
        return ""


def _sockname(raw: Any) -> tuple[str, int] | None:
    sock_stream = find_in_graph(raw, lambda o: isinstance(o, trio.SocketStream), max_depth=3)
    if sock_stream is None:
        return None
    try:
        name = sock_stream.socket.getsockname()
        return str(name[0]), int(name[1])
    except Exception:
        return None


def local_multiaddr(raw: Any, remote: str) -> str:
    """The local transport multiaddr of a connection, from its TCP socket's ``getsockname()``.

    Shaped like ``remote`` (same transport protocols, e.g. ``/tcp/.../ws``),
    with our IP and port; ``""`` if no socket is reachable.
    """
    if raw is None:
        return ""
    name = _sockname(raw)
    if name is None:
        return ""
    ip, port = name
    family = "ip6" if ":" in ip else "ip4"
    parts = remote.split("/")
    if len(parts) >= 5 and parts[1] in ("ip4", "ip6", "dns", "dns4", "dns6"):
        parts[1], parts[2], parts[4] = family, ip, str(port)
        return "/".join(parts)
    return f"/{family}/{ip}/tcp/{port}"


def transport_id(conn: Any, remote: str) -> bytes:
    """Transport family as bytes, e.g. ``b"tcp"`` (``SwarmConn.get_transport_family()``)."""
    family = ""
    try:
        family = str(tp.CONN_TRANSPORT_FAMILY.get(conn)())
    except Exception:
        family = ""
    if not family or family == "unknown":
        for name in ("quic-v1", "wss", "ws", "tcp", "udp"):
            if f"/{name}" in remote:
                family = name
                break
    return (family or "unknown").encode()


def muxer_protocol(conn: Any) -> str:
    """Negotiated stream muxer protocol id, e.g. ``"/yamux/1.0.0"``, or ``""``."""
    try:
        return str(tp.CONN_MUXER.get(conn)() or "")
    except Exception:
        return ""


def security_protocol(conn: Any) -> str:
    """Negotiated security protocol id, e.g. ``"/noise"``, or ``""``."""
    try:
        return str(tp.CONN_SECURITY.get(conn)() or "")
    except Exception:
        return ""


#: The largest latency reported, ns (``latency_ns`` is a uint64; a larger value would not
#: encode): anything above it is shown as this.
MAX_LATENCY_NS = (1 << 64) - 1


def latency_ns(conn: Any, peerstore: Any) -> int:
    """Round-trip latency to the peer in ns: the peerstore's EWMA of measured pings,
    else the yamux RTT, else 0 (unknown; also for a value that is not a finite positive
    number), at most :data:`MAX_LATENCY_NS`; see the module doc."""
    seconds = 0.0
    if peerstore is not None:
        try:
            seconds = float(peerstore.latency_EWMA(conn.muxed_conn.peer_id))
        except Exception:
            seconds = 0.0
    if seconds <= 0:
        rtt = tp.YAMUX_RTT.get(getattr(conn, "muxed_conn", None))
        if callable(rtt):
            try:
                seconds = float(rtt())
            except Exception:
                seconds = 0.0
    if not math.isfinite(seconds) or seconds <= 0:
        return 0  # unknown: an inf or nan from the peerstore must not break the snapshot
    return min(MAX_LATENCY_NS, int(seconds * 1e9))


def created_at_ms(conn: Any) -> int | None:
    """When py-libp2p created the ``SwarmConn`` (``_created_at``, post-upgrade), ms since epoch."""
    created = tp.CONN_CREATED_AT.get(conn)
    if isinstance(created, int | float):
        return int(created * 1000)
    return None


def swarm_connections(swarm: Any) -> list[Any]:
    """Every ``SwarmConn`` of a swarm (``get_connections()``, else its ``connections`` map)."""
    try:
        return list(swarm.get_connections())
    except Exception:
        conns: list[Any] = []
        for peer_conns in getattr(swarm, "connections", {}).values():
            conns.extend(peer_conns if isinstance(peer_conns, list) else [peer_conns])
        return conns


def conn_streams(conn: Any) -> list[Any]:
    """Every ``NetStream`` of a ``SwarmConn`` (``get_streams()``, else its ``streams``)."""
    try:
        return list(conn.get_streams())
    except Exception:
        return list(tp.CONN_STREAMS.get(conn, ()))
