"""How ids are written wherever a person or a tool such as jq sees them.

One way everywhere (``inspect --dump``, ``watch``, event contents, the
dashboard): connection and stream ids (``Connection.id``, ``conn_id``,
``StreamList.stream_ids``, ``Stream.id``, ``ConnectionRef.conn_id``) in
lowercase hex, so an event's ``connId`` equals the connection's ``id`` as
text; ``Connection.transport_id`` as text when every byte is printable ASCII
(ours is ``tcp``), else in hex.

:func:`message_to_json` is protobuf's JSON mapping of a ``ServerMessage``
with those fields rewritten so; every other field keeps the mapping
(camelCase names, enums by name, 64-bit integers as strings, default values
omitted).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from libp2p_introspection.protocol import pb

JSON = dict[str, Any]

_PRINTABLE_ASCII = frozenset(range(0x20, 0x7F))


def id_text(value: bytes) -> str:
    """A connection or stream id as lowercase hex (``""`` when empty)."""
    return value.hex()


def transport_text(value: bytes) -> str:
    """``Connection.transport_id`` as text if every byte is printable ASCII
    (U+0020-U+007E: ``b"tcp"`` is ``"tcp"``), else lowercase hex; ``""`` when empty."""
    if all(byte in _PRINTABLE_ASCII for byte in value):
        return value.decode("ascii")
    return value.hex()


def message_to_json(message: pb.ServerMessage) -> JSON:
    """``message`` in protobuf's JSON mapping, ids written as the module doc says."""
    data = json_format.MessageToDict(message)
    state = data.get("state")
    if state is not None:
        connections = state.get("subsystems", {}).get("connections", [])
        for connection, into in zip(
            message.state.subsystems.connections, connections, strict=True
        ):
            _connection(connection, into)
    return data


def _connection(connection: pb.Connection, into: JSON) -> None:
    # The mapping omits an empty bytes field; a present one is rewritten in place.
    if "id" in into:
        into["id"] = id_text(connection.id)
    if "transportId" in into:
        into["transportId"] = transport_text(connection.transport_id)
    if "connId" in into:
        into["connId"] = id_text(connection.conn_id)
    if "conn" in into:
        _connection(connection.conn, into["conn"])
    streams = into.get("streams")
    if streams is not None:
        if "streamIds" in streams:
            streams["streamIds"] = [id_text(value) for value in connection.streams.stream_ids]
        for stream, stream_into in zip(
            connection.streams.streams, streams.get("streams", []), strict=True
        ):
            _stream(stream, stream_into)


def _stream(stream: pb.Stream, into: JSON) -> None:
    if "id" in into:
        into["id"] = id_text(stream.id)
    reference = into.get("conn")
    if reference is not None:
        if "connId" in reference:
            reference["connId"] = id_text(stream.conn.conn_id)
        if "conn" in reference:
            _connection(stream.conn.conn, reference["conn"])
