"""The content of each shared event type: one builder per :mod:`event_specs` type.

Each returns the JSON object (a ``dict``) whose keys are exactly the type's
declared property names. Property conventions: ``peerId`` is a base58 peer id
(``peerIds`` a list of them); ``connId``/``streamId`` are the lowercase hex of
the ``Connection.id``/``Stream.id`` bytes seen in snapshots; ``*Addr`` are
multiaddr strings; ``*Ts`` are ms since epoch; ``bytes*`` are byte counts;
``totalTimeMs`` is ms. Nothing here knows py-libp2p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.event_specs import MESH_INBOUND, MESH_OUTBOUND
from libp2p_introspection.protocol.ids import id_text, transport_text

#: The statuses an ended connection or stream has, as the closing events write them.
_ENDED_NAMES = {pb.CLOSED: "CLOSED", pb.ERROR: "ERROR"}


def direction_name(role: int) -> str:
    """``"outbound"`` for ``pb.INITIATOR`` (we dialed / opened it), ``"inbound"`` otherwise:
    the connection and stream events' ``direction``."""
    return "outbound" if role == pb.INITIATOR else "inbound"


def connection_opened(
    *, peer_id: str, conn_id: bytes, role: int, local_addr: str, remote_addr: str,
    transport: bytes, multiplexer: str, encryption: str, open_ts: int,
) -> dict[str, Any]:  # fmt: skip
    """The content of :data:`CONNECTION_OPENED`.

    :param conn_id: ``Connection.id`` bytes (written as lowercase hex, as ``connId``).
    :param role: ``pb.INITIATOR`` | ``pb.RESPONDER``.
    :param transport: ``Connection.transport_id`` (written as :func:`ids.transport_text`).
    :param open_ts: ms since epoch.
    """
    return {
        "peerId": peer_id,
        "connId": id_text(conn_id),
        "direction": direction_name(role),
        "localAddr": local_addr,
        "remoteAddr": remote_addr,
        "transport": transport_text(transport),
        "multiplexer": multiplexer,
        "encryption": encryption,
        "openTs": open_ts,
    }


@dataclass(frozen=True, slots=True)
class Ending:
    """How a connection or stream ended: the half both closing events share.

    :param close_ts: ms since epoch.
    :param bytes_in: bytes received over its life (raw transport bytes for a
        connection, payload for a stream); ``bytes_out`` sent.
    :param status: the ``pb.Status`` it ends with, ``pb.CLOSED`` | ``pb.ERROR``.
    :param reason: how, e.g. "closed", "reset by remote", or the failure.
    """

    close_ts: int
    bytes_in: int
    bytes_out: int
    status: int
    reason: str

    def content(self) -> dict[str, Any]:
        """``closeTs``, ``bytesIn``, ``bytesOut``, ``status`` (by name), ``reason``.

        :raises KeyError: if ``status`` is not an ended one.
        """
        return {
            "closeTs": self.close_ts,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "status": _ENDED_NAMES[self.status],
            "reason": self.reason,
        }


def connection_closed(
    *, peer_id: str, conn_id: bytes, role: int, remote_addr: str, open_ts: int, ending: Ending
) -> dict[str, Any]:
    """The content of :data:`CONNECTION_CLOSED` (``conn_id`` bytes, ``open_ts`` ms since epoch).

    :raises KeyError: if ``ending.status`` is not an ended one.
    """
    return {
        "peerId": peer_id,
        "connId": id_text(conn_id),
        "direction": direction_name(role),
        "remoteAddr": remote_addr,
        "openTs": open_ts,
        **ending.content(),
    }


def stream_opened(
    *, peer_id: str, conn_id: bytes, stream_id: bytes, protocol: str, role: int, open_ts: int
) -> dict[str, Any]:
    """The content of :data:`STREAM_OPENED` (ids as bytes, ``open_ts`` ms since epoch)."""
    return {
        "peerId": peer_id,
        "connId": id_text(conn_id),
        "streamId": id_text(stream_id),
        "protocol": protocol,
        "direction": direction_name(role),
        "openTs": open_ts,
    }


def stream_closed(
    *, peer_id: str, conn_id: bytes, stream_id: bytes, protocol: str, role: int, open_ts: int,
    ending: Ending,
) -> dict[str, Any]:  # fmt: skip
    """The content of :data:`STREAM_CLOSED` (as :func:`stream_opened`, and how it ended).

    :raises KeyError: if ``ending.status`` is not an ended one.
    """
    return {
        **stream_opened(
            peer_id=peer_id, conn_id=conn_id, stream_id=stream_id, protocol=protocol, role=role,
            open_ts=open_ts,
        ),
        **ending.content(),
    }  # fmt: skip


def pubsub_subscription_changed(*, peer_id: str, topic: str, subscribed: bool) -> dict[str, Any]:
    """The content of :data:`PUBSUB_SUBSCRIPTION_CHANGED` (``peer_id`` base58)."""
    return {"peerId": peer_id, "topic": topic, "subscribed": bool(subscribed)}


def pubsub_mesh_change(*, peer_id: str, topic: str, direction: str) -> dict[str, Any]:
    """The content of :data:`PUBSUB_GRAFT` and :data:`PUBSUB_PRUNE` (``peer_id`` base58).

    :param direction: :data:`MESH_INBOUND` | :data:`MESH_OUTBOUND`.
    :raises ValueError: for any other ``direction``.
    """
    if direction not in (MESH_INBOUND, MESH_OUTBOUND):
        raise ValueError(f"mesh change direction must be INBOUND or OUTBOUND, not {direction!r}")
    return {"peerId": peer_id, "topic": topic, "direction": direction}


def peer_identified(
    *, peer_id: str, agent_version: str, protocol_version: str, protocols: Sequence[str]
) -> dict[str, Any]:
    """The content of :data:`PEER_IDENTIFIED` (``peer_id`` base58; the rest as the peer sent it)."""
    return {
        "peerId": peer_id,
        "agentVersion": agent_version,
        "protocolVersion": protocol_version,
        "protocols": list(protocols),
    }


def listen_addrs_changed(*, added: Sequence[str], removed: Sequence[str]) -> dict[str, Any]:
    """The content of :data:`LISTEN_ADDRS_CHANGED` (multiaddr strings, no ``/p2p/`` suffix)."""
    return {"added": list(added), "removed": list(removed)}


def reachability_changed(reachability: int) -> dict[str, Any]:
    """The content of :data:`REACHABILITY_CHANGED` for a ``pb.NodeInfo.Reachability`` value.

    :raises ValueError: if ``reachability`` is not a value of the enum.
    """
    return {"reachability": pb.NodeInfo.Reachability.Name(reachability)}
