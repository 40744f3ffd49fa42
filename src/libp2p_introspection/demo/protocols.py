"""Stream protocols the demo nodes speak, with their handlers and clients.

``/ipfs/ping/1.0.0`` (libp2p ping)
    py-libp2p's own handler (:class:`libp2p.host.ping.PingService`) answers;
    the client (:func:`ping_session`) opens one stream, does a few 32-byte
    round trips a fraction of a second apart, then closes it.

``/libp2p-introspection/demo/echo/1.0.0`` (:data:`ECHO_PROTOCOL_ID`)
    The responder writes back every byte it reads until the initiator
    half-closes, then closes its side. The client (:func:`echo_session`)
    sends a few messages (bytes-sized, configurable) spaced in time, reading
    each echo back, so an echo stream stays open for up to a few seconds.

``/libp2p-introspection/demo/bulk/1.0.0`` (:data:`BULK_PROTOCOL_ID`)
    One transfer per stream. The initiator sends a 5-byte request: one op
    byte, ``U`` (upload: initiator -> responder) or ``D`` (download:
    responder -> initiator), then the payload size in bytes as a big-endian
    uint32 (at most :data:`BULK_MAX_BYTES`). The payload follows in the chosen
    direction, paced at a configurable rate. After an upload the responder
    acknowledges with the byte count it received (big-endian uint32). Both
    sides then close.

All handlers are bounded in time (:data:`HANDLER_TIMEOUT_S`) and never raise:
a reset or a vanished peer (churn) is logged at DEBUG and the stream reset.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import struct
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID as PeerID

from libp2p_introspection.demo.errors import DemoError
from libp2p_introspection.demo.stats import NodeStats

__all__ = [
    "BULK_MAX_BYTES",
    "BULK_PROTOCOL_ID",
    "DEMO_PROTOCOL_IDS",
    "ECHO_PROTOCOL_ID",
    "HANDLER_TIMEOUT_S",
    "PING_PROTOCOL_ID",
    "bulk_session",
    "echo_session",
    "make_bulk_handler",
    "make_echo_handler",
    "ping_session",
]

logger = logging.getLogger(__name__)

ECHO_PROTOCOL_ID = TProtocol("/libp2p-introspection/demo/echo/1.0.0")
BULK_PROTOCOL_ID = TProtocol("/libp2p-introspection/demo/bulk/1.0.0")
#: The protocols the demo opens streams on itself (the DHT adds /ipfs/kad/1.0.0).
DEMO_PROTOCOL_IDS: tuple[TProtocol, ...] = (PING_PROTOCOL_ID, ECHO_PROTOCOL_ID, BULK_PROTOCOL_ID)

#: Largest bulk transfer a responder accepts, bytes.
BULK_MAX_BYTES = 4 * 1024 * 1024
#: A handler gives up (and resets the stream) after this many seconds.
HANDLER_TIMEOUT_S = 60.0

_CHUNK = 16 * 1024
_BULK_REQUEST = struct.Struct(">cI")
_U32 = struct.Struct(">I")

StreamHandler = Callable[[INetStream], Awaitable[None]]


class DemoProtocolError(DemoError):
    """The peer did not follow a demo protocol (short read, bad request...)."""


async def _read_exact(stream: INetStream, n: int) -> bytes:
    """Read exactly ``n`` bytes (``stream.read(n)`` may return fewer)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        try:
            data = await stream.read(min(n - got, 64 * 1024))
        except StreamEOF:
            data = b""
        if not data:
            raise DemoProtocolError(f"stream ended after {got} of {n} bytes")
        parts.append(data)
        got += len(data)
    return b"".join(parts)


async def _read_until_eof(stream: INetStream) -> int:
    """Drain the stream until the peer closes its side; return bytes read."""
    total = 0
    while True:
        try:
            data = await stream.read(64 * 1024)
        except StreamEOF:
            return total
        if not data:
            return total
        total += len(data)


async def _send_paced(stream: INetStream, size: int, rate: int, stats: NodeStats) -> None:
    """Write ``size`` random-ish bytes in chunks, at ``rate`` bytes/s (0: unpaced)."""
    block = secrets.token_bytes(_CHUNK)
    sent = 0
    while sent < size:
        n = min(_CHUNK, size - sent)
        await stream.write(block[:n])
        sent += n
        stats.payload_bytes_sent += n
        if rate > 0:
            await trio.sleep(n / rate)


async def _abort(stream: INetStream) -> None:
    """Reset a stream, ignoring errors (the connection may already be gone)."""
    with trio.CancelScope(shield=True), trio.move_on_after(1), contextlib.suppress(Exception):
        await stream.reset()


def count_inbound(handler: StreamHandler, stats: NodeStats) -> StreamHandler:
    """Wrap a stream handler so accepted streams are counted in ``stats``."""

    async def counted(stream: INetStream) -> None:
        stats.streams_in[str(stream.get_protocol())] += 1
        await handler(stream)

    return counted


def make_echo_handler(stats: NodeStats) -> StreamHandler:
    """Responder side of the echo protocol, counting into ``stats``."""

    async def handle_echo(stream: INetStream) -> None:
        stats.streams_in[ECHO_PROTOCOL_ID] += 1
        try:
            with trio.fail_after(HANDLER_TIMEOUT_S):
                while True:
                    try:
                        data = await stream.read(64 * 1024)
                    except StreamEOF:
                        break
                    if not data:
                        break
                    stats.payload_bytes_received += len(data)
                    await stream.write(data)
                    stats.payload_bytes_sent += len(data)
                await stream.close()
        except Exception as exc:  # demo traffic must never crash a node
            logger.debug("echo handler: %r", exc)
            await _abort(stream)

    return handle_echo


def make_bulk_handler(stats: NodeStats, rate_bytes_per_s: int) -> StreamHandler:
    """Responder side of the bulk protocol; downloads are paced at ``rate_bytes_per_s``."""

    async def handle_bulk(stream: INetStream) -> None:
        stats.streams_in[BULK_PROTOCOL_ID] += 1
        try:
            with trio.fail_after(HANDLER_TIMEOUT_S):
                op, size = _BULK_REQUEST.unpack(await _read_exact(stream, _BULK_REQUEST.size))
                if size > BULK_MAX_BYTES or op not in (b"U", b"D"):
                    raise DemoProtocolError(f"bad bulk request op={op!r} size={size}")
                if op == b"U":
                    received = await _read_until_eof(stream)
                    stats.payload_bytes_received += received
                    await stream.write(_U32.pack(received))
                else:
                    await _send_paced(stream, size, rate_bytes_per_s, stats)
                await stream.close()
        except Exception as exc:  # demo traffic must never crash a node
            logger.debug("bulk handler: %r", exc)
            await _abort(stream)

    return handle_bulk


async def _finish(stream: INetStream) -> None:
    """Half-close, wait for the responder to close its side, then release."""
    await stream.close_write()
    await _read_until_eof(stream)
    await stream.close()


async def ping_session(
    host: IHost, peer: PeerID, rounds: int, gap_s: float, stats: NodeStats
) -> list[int]:
    """Open a ping stream to ``peer``, do ``rounds`` round trips ``gap_s`` apart.

    Returns the RTTs in milliseconds. Each RTT is also recorded in the host's
    peerstore (``record_latency``, seconds, measured here on trio's clock:
    py-libp2p rounds its own to whole ms), where py-libp2p's health monitor
    records its pings: the latency the introspector shows comes from there.
    Uses a fresh stream per session rather than :meth:`PingService.ping` (which
    shares one cached stream per peer, so two concurrent sessions to one peer
    would interleave their reads).
    """
    stream = await host.new_stream(peer, [PING_PROTOCOL_ID])
    stats.streams_out[PING_PROTOCOL_ID] += 1
    try:
        rtts = []
        for i in range(rounds):
            if i:
                await trio.sleep(gap_s)
            started = trio.current_time()
            rtts.append(await perform_ping_roundtrip(stream))
            host.get_peerstore().record_latency(peer, trio.current_time() - started)
        await _finish(stream)
        return rtts
    except BaseException:
        await _abort(stream)
        raise


async def echo_session(
    host: IHost, peer: PeerID, sizes: list[int], gap_s: float, stats: NodeStats
) -> None:
    """Send one echo message per entry of ``sizes`` (bytes), ``gap_s`` apart."""
    stream = await host.new_stream(peer, [ECHO_PROTOCOL_ID])
    stats.streams_out[ECHO_PROTOCOL_ID] += 1
    try:
        for i, size in enumerate(sizes):
            if i:
                await trio.sleep(gap_s)
            msg = secrets.token_bytes(size)
            await stream.write(msg)
            stats.payload_bytes_sent += size
            if await _read_exact(stream, size) != msg:
                raise DemoProtocolError("echo mismatch")
            stats.payload_bytes_received += size
        await _finish(stream)
    except BaseException:
        await _abort(stream)
        raise


async def bulk_session(
    host: IHost,
    peer: PeerID,
    upload: bool,
    size: int,
    rate_bytes_per_s: int,
    stats: NodeStats,
) -> None:
    """Transfer ``size`` bytes to (``upload``) or from ``peer`` on one bulk stream."""
    if not 0 < size <= BULK_MAX_BYTES:
        raise ValueError(f"bulk size must be within 1..{BULK_MAX_BYTES}")
    stream = await host.new_stream(peer, [BULK_PROTOCOL_ID])
    stats.streams_out[BULK_PROTOCOL_ID] += 1
    try:
        await stream.write(_BULK_REQUEST.pack(b"U" if upload else b"D", size))
        if upload:
            await _send_paced(stream, size, rate_bytes_per_s, stats)
            await stream.close_write()
            (acked,) = _U32.unpack(await _read_exact(stream, _U32.size))
            if acked != size:
                raise DemoProtocolError(f"bulk upload: peer got {acked} of {size} bytes")
            await _read_until_eof(stream)
            await stream.close()
        else:
            await _read_exact(stream, size)
            stats.payload_bytes_received += size
            await _finish(stream)
    except BaseException:
        await _abort(stream)
        raise
