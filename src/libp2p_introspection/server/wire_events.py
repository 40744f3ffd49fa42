"""What :class:`~libp2p_introspection.server.wire.ServerWire` reports: its events.

Small immutable records, one per thing that happened on the connection (as h11
and wsproto keep theirs apart from their state machines); the handshake's own
two, :class:`~libp2p_introspection.server.handshake.UpgradeRequested` and
:class:`~libp2p_introspection.server.handshake.PlainRequest`, are in
:mod:`libp2p_introspection.server.handshake`.
"""

from __future__ import annotations

from dataclasses import dataclass

from libp2p_introspection.server.handshake import PlainRequest, UpgradeRequested


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A whole message: ``bytes`` for a binary message, ``str`` for a text one."""

    data: bytes | str


@dataclass(frozen=True, slots=True)
class PongReceived:
    """A pong frame with ``payload`` (the answer to a ping, or unsolicited)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ClosedByPeer:
    """The client sent a close frame (``code``, ``reason``; 1005 if it gave none), or
    answered ours. Whatever the reply needs is queued: flush it, then close the socket."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The client broke RFC 6455 (``code`` 1002, 1007 for bad UTF-8). Nothing more is
    read: close with ``code``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageTooBig:
    """The client's message grew past ``max_message_size`` (``size`` bytes of it were
    received, more than the limit), or took more than ``max_frames`` frames (then
    ``frames`` is that count plus one, and ``size`` may be under the limit). It was not
    buffered and nothing more is read; the session decides the close (PROTOCOL.md
    §4.8: 1009)."""

    size: int
    frames: int = 1
    max_frames: int | None = None


WireEvent = (
    UpgradeRequested
    | PlainRequest
    | MessageReceived
    | PongReceived
    | ClosedByPeer
    | ProtocolViolation
    | MessageTooBig
)
