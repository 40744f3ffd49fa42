"""Protobuf rendering of the connection registry's records (PROTOCOL.md §3 ``Connection``).

Reads :mod:`~libp2p_introspection.introspector.records` and writes
``pb.Connection`` messages; the one py-libp2p read here is a live
connection's latency (:func:`~libp2p_introspection.introspector.conninfo.latency_ns`).
Rendering marks each ended stream as reported: it appears in exactly one
snapshot after it ended (the registry's ``purge`` then drops it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from libp2p_introspection.introspector import conninfo
from libp2p_introspection.introspector.records import ENDED, ConnectionRecord, StreamRecord
from libp2p_introspection.protocol import pb

logger = logging.getLogger(__name__)


def fill_connections(
    records: Iterable[ConnectionRecord],
    out: Any,
    window_ms: int,
    peerstore: Any = None,
    reported: list[StreamRecord] | None = None,
) -> None:
    """Append one ``pb.Connection`` per record to ``out`` (a repeated field).

    :param window_ms: the snapshot window, ms (the ``inst_bw`` of every gauge).
    :param peerstore: the host's peerstore (latency fallback), may be ``None``.
    :param reported: where each ended stream goes once reported (the registry's
        ``reported``, which its ``purge`` drops).

    A record that cannot be described is logged and skipped.
    """
    for record in records:
        try:
            fill_connection(out.add(), record, window_ms, peerstore, reported)
        except Exception:
            logger.exception("introspector: could not describe a connection")


def fill_connection(
    msg: pb.Connection,
    record: ConnectionRecord,
    window_ms: int,
    peerstore: Any = None,
    reported: list[StreamRecord] | None = None,
) -> None:
    """Fill one ``pb.Connection`` (every sub-message present) with its streams."""
    msg.id = record.id
    msg.peer_id = record.peer_id
    msg.status = record.status
    msg.transport_id = record.transport
    msg.endpoints.SetInParent()
    msg.endpoints.src_multiaddr = record.local_addr
    msg.endpoints.dst_multiaddr = record.remote_addr
    msg.timeline.SetInParent()
    msg.timeline.open_ts = record.open_ts
    msg.timeline.upgraded_ts = record.upgraded_ts
    msg.timeline.close_ts = record.close_ts
    msg.role = record.role
    record.traffic.to_pb(msg.traffic, window_ms)
    msg.attribs.SetInParent()
    msg.attribs.multiplexer = record.muxer
    msg.attribs.encryption = record.security
    if record.conn is not None:
        record.latency_ns = conninfo.latency_ns(record.conn, peerstore)
    msg.latency_ns = record.latency_ns
    if record.tags:
        msg.user_provided_tags.extend(record.tags)
    streams = msg.streams
    streams.SetInParent()
    stream_ids = streams.stream_ids
    add = streams.streams.add
    conn_ref = {"conn_id": record.id}
    # Each stream is built from keywords in one C call (see TrafficCounter.to_dict).
    for stream_record in record.streams.values():
        stream_ids.append(stream_record.id)
        add(
            id=stream_record.id,
            protocol=stream_record.current_protocol(),
            role=stream_record.role,
            traffic=stream_record.traffic.to_dict(window_ms),
            conn=conn_ref,
            timeline={"open_ts": stream_record.open_ts, "close_ts": stream_record.close_ts},
            status=stream_record.status,
        )
        if stream_record.tags:
            streams.streams[-1].user_provided_tags.extend(stream_record.tags)
        if stream_record.status in ENDED and not stream_record.reported_closed:
            stream_record.reported_closed = True
            if reported is not None:
                reported.append(stream_record)
