"""A client that speaks WebSocket byte by byte (RFC 6455), for tests that must break the rules."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

import trio

from libp2p_introspection.protocol import pb

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def request(path: str = "/introspect", headers: list[tuple[str, str]] | None = None) -> bytes:
    """A complete upgrade request for ``path`` with extra ``headers``."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers or []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    masked: bool = True,
) -> bytes:
    """One client frame; ``masked=False`` and ``rsv1=True`` break RFC 6455 on purpose."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def command(cmd: int, source: int = 0, cid: int = 1) -> bytes:
    """A masked binary frame carrying one ClientCommand."""
    return frame(0x2, pb.ClientCommand(id=cid, command=cmd, source=source).SerializeToString())


@dataclass
class Frame:
    """One server frame: ``opcode`` and ``payload``; for a close frame, ``code`` and ``reason``."""

    opcode: int
    payload: bytes

    @property
    def code(self) -> int:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    @property
    def reason(self) -> str:
        return self.payload[2:].decode("utf-8")


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Server frames (unmasked) in ``data``, and the bytes of an incomplete last frame.

    Raises ``AssertionError`` for a masked server frame or a reserved bit (the
    server negotiates no extension).
    """
    frames: list[Frame] = []
    pos = 0
    while len(data) - pos >= 2:
        first, second = data[pos], data[pos + 1]
        assert not first & 0x70, f"reserved bits set in a server frame: {first:#x}"
        assert not second & 0x80, "a server frame is masked"
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(data) - pos < 4:
                break
            size, offset = struct.unpack("!H", data[pos + 2 : pos + 4])[0], 4
        elif size == 127:
            if len(data) - pos < 10:
                break
            size, offset = struct.unpack("!Q", data[pos + 2 : pos + 10])[0], 10
        if len(data) - pos < offset + size:
            break
        frames.append(Frame(first & 0x0F, data[pos + offset : pos + offset + size]))
        pos += offset + size
    return frames, data[pos:]


async def open_raw(port: int, *, receive_buffer: int | None = None) -> trio.SocketStream:
    """A TCP connection to the server on loopback; ``receive_buffer`` sets SO_RCVBUF, bytes."""
    sock = trio.socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def handshake(stream: trio.SocketStream, data: bytes | None = None) -> bytes:
    """Send an upgrade request; return the response head (through the blank line) and
    keep nothing else: call it before anything that reads frames."""
    await stream.send_all(data or request())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(1)
        assert chunk, f"the server hung up during the handshake: {head!r}"
        head += chunk
    return head


async def read_to_eof(stream: trio.SocketStream, limit: int = 64 * 1024 * 1024) -> bytes:
    """Everything the server sends until it closes the connection (at most ``limit`` bytes)."""
    data = bytearray()
    while len(data) < limit:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break  # a reset ends the stream as an EOF does; the test checks what came
        if not chunk:
            break
        data += chunk
    return bytes(data)


def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER 0: the kernel sends an RST, not a FIN."""
    sock = stream.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
