"""Hostile records built directly on the wire: small bytes that parsing would expand.

A few megabytes are written in milliseconds here (building a million
``Connection`` objects with protobuf would take seconds and the memory these
tests want to keep small). Nothing large is committed: every file is made by
the test that needs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_varint
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    """A varint field."""
    return encode_varint(number << 3) + encode_varint(value)


def connection(streams: int = 0, *, extra: bytes = b"") -> bytes:
    """A serialized ``Connection`` holding ``streams`` empty streams (and ``extra`` bytes)."""
    body = field(11, field(2, b"") * streams) if streams else b""
    return body + extra


def state(connections: Iterable[bytes] | bytes = b"", instant_ts: int = START_MS) -> bytes:
    """A serialized ``ServerMessage{version: 1, state}`` with these serialized connections
    (``connections`` as bytes: the ``Subsystems`` body itself)."""
    body = connections if isinstance(connections, bytes) else b"".join(
        field(1, c) for c in connections
    )
    inner = field(1, body) + varint_field(3, instant_ts)
    return field(1, varint_field(1, 1)) + field(2, inner)


def empty_connections_state(count: int, instant_ts: int = START_MS) -> bytes:
    """A snapshot of ``count`` empty connections: two bytes each on the wire."""
    return state(b"\x0a\x00" * count, instant_ts)


def runtime(name: str = "hostile") -> bytes:
    message = pb.ServerMessage()
    message.version.version = 1
    message.runtime.implementation = name
    message.runtime.peer_id = "QmHostile"
    return message.SerializeToString()


def event(ts: int, content: str = "{}", name: str = "E") -> bytes:
    message = pb.ServerMessage()
    message.version.version = 1
    message.event.type.name = name
    message.event.ts = ts
    message.event.content = content
    return message.SerializeToString()


def normal_state(instant_ts: int, connections: int = 2) -> bytes:
    """An honest little snapshot (parsed and serialized by protobuf)."""
    message = pb.ServerMessage()
    message.version.version = 1
    message.state.instant_ts = instant_ts
    message.state.start_ts = instant_ts - 1_000
    for n in range(connections):
        conn = message.state.subsystems.connections.add()
        conn.id = bytes([n + 1])
        conn.timeline.open_ts = instant_ts - 500
        stream = conn.streams.streams.add()
        stream.id = bytes([n + 1, 1])
        stream.timeline.open_ts = instant_ts - 400
    return message.SerializeToString()


def write(path: Path, messages: Iterable[bytes]) -> Path:
    """A recording file of these serialized ``ServerMessage``s."""
    with RecordingWriter(path) as writer:
        for data in messages:
            writer.write(data)
    return path
