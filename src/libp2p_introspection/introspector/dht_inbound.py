"""The inbound side of a Kademlia stream, as the DHT tracker follows it.

:class:`RequestReader` follows the varint-length-prefixed requests in the bytes
py-libp2p reads from one inbound ``/ipfs/kad/1.0.0`` stream (sans-I/O: it is
fed the chunks the stream's traffic counter sees): each request's message
type, key, and the time its first byte was read. :class:`MetricTap` stands in
for the stream's ``metric_send_channel`` for one handler call, so that the
tracker hears each request py-libp2p handled to completion
(:mod:`libp2p_introspection.introspector.dht`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from libp2p.kad_dht.pb.kademlia_pb2 import Message

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.touchpoints import Touchpoint
from libp2p_introspection.protocol import protowire
from libp2p_introspection.protocol.clock import MonotonicS
from libp2p_introspection.protocol.dht import UNKNOWN
from libp2p_introspection.protocol.prefixed import PrefixedMessage, PrefixedReader

logger = logging.getLogger(__name__)

#: ``KadDhtEvent`` flag -> message name, for an inbound request whose bytes were not seen.
_INBOUND_FLAGS: tuple[tuple[Touchpoint, str], ...] = tuple(
    zip(tp.EVENT_FLAGS, ("FIND_NODE", "GET_VALUE", "PUT_VALUE", "GET_PROVIDERS", "ADD_PROVIDER"),
        strict=True)
)  # fmt: skip

#: Bytes of a request body kept to read its type and key (fields 1 and 2, which
#: protobuf writes first); a longer body (a big PUT_VALUE) is not kept whole.
_KEPT_REQUEST_BYTES = 4096


@dataclass
class InboundRequest:
    """One Kademlia request read from an inbound stream.

    ``received_ts``: ms since epoch when its first byte was read; ``started``:
    the reader's monotonic clock then, seconds; ``message_type``: the message name (``UNKNOWN``
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

    def __init__(
        self, clock_ms: Callable[[], int], max_size: int, monotonic: MonotonicS = time.monotonic
    ) -> None:
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self.complete: deque[InboundRequest] = deque()
        self.partial: InboundRequest | None = None
        self._reader = PrefixedReader(max_size, keep=_KEPT_REQUEST_BYTES)

    def feed(self, data: bytes) -> None:
        """Account for one chunk read from the stream."""
        for found in self._reader.feed(data):
            if isinstance(found, PrefixedMessage):
                self._finish(found)
            else:
                self.partial = InboundRequest(self._clock_ms(), self._monotonic())

    def _finish(self, read: PrefixedMessage) -> None:
        request = self.partial
        assert request is not None
        body = read.body
        if read.declared_length <= _KEPT_REQUEST_BYTES:
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


class MetricTap:
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


def _message_name(number: int) -> str:
    try:
        return str(Message.MessageType.Name(number))
    except ValueError:
        return UNKNOWN


def inbound_type(value: Any) -> str:
    """The message a ``KadDhtEvent`` reports (py-libp2p flags PING as nothing)."""
    for flag, name in _INBOUND_FLAGS:
        if flag.get(value, False):
            return name
    return "PING"
