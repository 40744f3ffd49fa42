"""Who each peer is: ``Connection.peer`` (``PeerInfo``) and ``PeerIdentified``, from identify.

py-libp2p 0.8.1 keeps a peer's protocols and addresses in its peerstore but not
its agent version nor its protocol version, and not what it reported as our
address. So the introspector reads the identify messages themselves, off the
streams it already counts: every chunk a negotiated ``NetStream.read()``
returns is handed to the stream's :class:`~libp2p_introspection.introspector.traffic.TrafficCounter`
observer, and on

* an ``/ipfs/id/1.0.0`` stream *we* opened (py-libp2p's ``BasicHost`` opens
  one to every peer that connects, either direction, and reads the peer's
  answer from it), and
* an ``/ipfs/id/push/1.0.0`` stream the *peer* opened (it pushes a new
  identify message when its addresses or protocols change),

the observer reassembles the one varint-length-prefixed ``Identify`` message
(``libp2p.identity.identify.pb.identify_pb2``) py-libp2p reads there, exactly
the bytes py-libp2p's own reader consumes, and parses it. Nothing is asked of
the peer and nothing is estimated: a peer is identified when py-libp2p got
its identify message, and only then. A peer identified before the
introspector was attached has no ``PeerInfo`` until it sends another one.

A push updates what it carries (fields absent from it keep their previous
value, as py-libp2p's peerstore update does). ``PeerInfo`` is per peer, the
same on every connection to it. It is kept while a connection to that peer is
in snapshots or the host's peerstore still holds the peer: py-libp2p does not
identify a peer again when it reconnects if the peerstore still lists the
protocols it learnt (``BasicHost._has_cached_protocols``), so the peer's new
connections show what it said last time, as py-libp2p itself goes by.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.records import ConnectionRecord, StreamRecord
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter
from libp2p_introspection.protocol.prefixed import PrefixError, read_length_prefix

logger = logging.getLogger(__name__)

#: The largest identify message read, bytes: py-libp2p's own limit
#: (``read_length_prefixed_protobuf``'s ``max_length``); a larger one is not read.
MAX_MESSAGE_BYTES = 1024 * 1024
#: At most this many protocols and listen addresses are kept per peer (py-libp2p
#: keeps at most 1000 listen addresses of a peer too); the rest are dropped.
MAX_ENTRIES = 1000
#: Agent/protocol version strings longer than this (characters) are cut to it.
MAX_TEXT = 1024


class MessageReader:
    """Reassembles one varint-length-prefixed message from the chunks a stream read.

    :meth:`feed` returns the message body (bytes) once complete, else ``None``;
    afterwards (or once the declared length exceeds ``max_bytes``, or the
    prefix is not a varint) :attr:`done` is true and further chunks are ignored.
    """

    __slots__ = ("_buffer", "_length", "_offset", "done", "max_bytes")

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.done = False
        self._buffer = bytearray()
        self._length: int | None = None
        self._offset = 0

    def feed(self, data: bytes) -> bytes | None:
        """Add one chunk; the whole message body once it is complete, else ``None``."""
        if self.done:
            return None
        self._buffer += data
        if self._length is None and not self._read_prefix():
            return None
        assert self._length is not None
        end = self._offset + self._length
        if len(self._buffer) < end:
            return None
        self.done = True
        body = bytes(self._buffer[self._offset : end])
        self._buffer = bytearray()
        return body

    def _read_prefix(self) -> bool:
        try:
            prefix = read_length_prefix(self._buffer, self.max_bytes)
        except PrefixError as exc:
            self._give_up(str(exc))
            return False
        if prefix is not None:
            self._length, self._offset = prefix
        return prefix is not None

    def _give_up(self, why: str) -> None:
        logger.debug("introspector: identify message %s; not read", why)
        self.done = True
        self._buffer = bytearray()


@dataclass(frozen=True)
class PeerIdentity:
    """What a peer said about itself in identify (PROTOCOL.md §3.1 ``PeerInfo``).

    ``agent_version``/``protocol_version`` as it sent them (cut to
    :data:`MAX_TEXT`); ``protocols`` the protocol ids it speaks and
    ``listen_addrs`` the multiaddrs it listens on (at most :data:`MAX_ENTRIES`
    each, undecodable addresses skipped); ``observed_addr`` the multiaddr it
    sees us at ("" if it sent none).
    """

    agent_version: str
    protocol_version: str
    protocols: tuple[str, ...]
    listen_addrs: tuple[str, ...]
    observed_addr: str

    def to_pb(self) -> pb.PeerInfo:
        """This identity as a ``pb.PeerInfo``."""
        return pb.PeerInfo(
            agent_version=self.agent_version,
            protocol_version=self.protocol_version,
            protocols=self.protocols,
            listen_addrs=self.listen_addrs,
            observed_addr=self.observed_addr,
        )


EMPTY = PeerIdentity("", "", (), (), "")


def multiaddr_text(raw: bytes) -> str:
    """A binary multiaddr as text, or "" if it does not decode."""
    try:
        return str(Multiaddr(bytes(raw)))
    except Exception:
        return ""


def apply_message(previous: PeerIdentity, message: Identify) -> PeerIdentity:
    """``previous`` updated with what ``message`` carries (absent fields keep their value)."""
    agent = message.agent_version[:MAX_TEXT] if message.HasField("agent_version") else None
    version = message.protocol_version[:MAX_TEXT] if message.HasField("protocol_version") else None
    protocols = tuple(str(p) for p in message.protocols[:MAX_ENTRIES]) or previous.protocols
    addrs = (
        tuple(text for text in map(multiaddr_text, message.listen_addrs[:MAX_ENTRIES]) if text)
        or previous.listen_addrs
    )
    observed = previous.observed_addr
    if message.HasField("observed_addr") and message.observed_addr:
        observed = multiaddr_text(message.observed_addr)
    return PeerIdentity(
        agent_version=previous.agent_version if agent is None else agent,
        protocol_version=previous.protocol_version if version is None else version,
        protocols=protocols,
        listen_addrs=addrs,
        observed_addr=observed,
    )


class IdentifyTracker:
    """Reads the identify messages peers send us; holds each peer's :class:`PeerIdentity`.

    :param emitter: where ``PeerIdentified`` goes: one event per identify
        message received (an answer to our identify request, or a push).
    :param peerstore: the host's peerstore (``IPeerStore.has_peer``): a peer it
        holds keeps its identity after its connections left the snapshots.

    Register :meth:`on_stream` as a stream listener of the connection
    registry (:meth:`attach` does); :meth:`fill` sets ``Connection.peer``.
    """

    def __init__(self, emitter: EventEmitter, peerstore: Any = None) -> None:
        self._emitter = emitter
        self._peerstore = peerstore
        self._identify = str(tp.constant(tp.IDENTIFY_PROTOCOL, "/ipfs/id/1.0.0"))
        self._push = str(tp.constant(tp.IDENTIFY_PUSH_PROTOCOL, "/ipfs/id/push/1.0.0"))
        self._active = False
        #: peer id (base58) -> what it said, the same as a ``pb.PeerInfo``, and as the
        #: serialized ``Connection.peer`` field (field 100: tag, length, ``PeerInfo``).
        self._peers: dict[str, tuple[PeerIdentity, pb.PeerInfo, bytes]] = {}
        #: peer id (base58) -> its serialized ``Connection.peer`` field (the third item
        #: of its entry above), for the snapshot encoder to look up without a call per
        #: connection (:meth:`peer_field` reads it; kept in step with ``_peers``).
        self.peer_fields: dict[str, bytes] = {}
        #: The address each connection's peer reported seeing us at (the node's observed_addrs).
        self._observed: dict[ConnectionRecord, str] = {}
        #: Whether :meth:`prune` may find something to forget: set when a peer or an
        #: address is learnt, when a connection leaves the registry
        #: (:meth:`follow_releases`), and after a prune that kept a peer only because the
        #: peerstore still knows it. ``None``: releases are not followed, every prune
        #: walks the records.
        self._stale: bool | None = None

    def follow_releases(self, connection_released: list[Any]) -> None:
        """Be told when a connection leaves the registry (``connection_released``: the
        registry's listeners, called with the record): :meth:`prune` then walks the
        records only when something it could forget changed, not on every snapshot."""
        connection_released.append(self._released)
        self._stale = True

    def _released(self, record: ConnectionRecord) -> None:
        self._stale = True

    def attach(self, listeners: list[Any]) -> None:
        """Start reading identify streams registered from now on (``listeners`` is the
        registry's ``stream_listeners``)."""
        self._active = True
        listeners.append(self.on_stream)

    def detach(self, listeners: list[Any]) -> None:
        """Stop: no more messages are read and no more events emitted."""
        self._active = False
        if self.on_stream in listeners:
            listeners.remove(self.on_stream)

    def identity(self, peer_id: str) -> PeerIdentity | None:
        """What ``peer_id`` (base58) told us, or ``None`` if it has not been identified."""
        entry = self._peers.get(peer_id)
        return entry[0] if entry is not None else None

    def observed_addrs(self) -> list[str]:
        """Every distinct address our peers reported seeing us at (identify's
        ``observed_addr``), over the connections in the last snapshot, first seen first."""
        return list(dict.fromkeys(addr for addr in self._observed.values() if addr))

    # ------------------------------------------------------------- reading

    def on_stream(self, record: StreamRecord) -> None:
        """A stream was registered: look at its first payload chunk to see if it is ours.

        A stream already negotiated when registered (adopted at attach, or found
        late) is not read: some of its message may have gone by unseen.
        """
        if record.current_protocol():
            return
        counter = record.traffic

        def first_chunk(data: bytes) -> None:
            counter.observer = None
            if not self._active:
                return
            protocol = record.current_protocol()
            inbound_role = pb.INITIATOR if protocol == self._identify else pb.RESPONDER
            if protocol not in (self._identify, self._push) or record.role != inbound_role:
                return  # not a stream the peer's identify message arrives on
            reader = MessageReader()

            def chunk(data: bytes) -> None:
                try:
                    body = reader.feed(data)
                    if reader.done:
                        counter.observer = None
                    if body is not None:
                        self._received(record.conn, body)
                except Exception:
                    logger.exception("introspector: reading an identify message failed")

            counter.observer = chunk
            chunk(data)

        if counter.observer is None:
            counter.observer = first_chunk

    def _received(self, conn: ConnectionRecord, body: bytes) -> None:
        if not self._active:
            return
        try:
            message = Identify.FromString(body)
        except Exception as exc:
            logger.debug("introspector: undecodable identify message from %s: %s", conn.peer_id,
                         exc)  # fmt: skip
            return
        previous = self._peers.get(conn.peer_id)
        identity = apply_message(previous[0] if previous else EMPTY, message)
        info = identity.to_pb()
        field = pb.Connection(peer=info).SerializeToString()
        self._peers[conn.peer_id] = (identity, info, field)
        self.peer_fields[conn.peer_id] = field
        if message.HasField("observed_addr") and identity.observed_addr:
            self._observed[conn] = identity.observed_addr
        if self._stale is not None:
            self._stale = True  # the connection may have left the registry already
        content = events.peer_identified(
            peer_id=conn.peer_id, agent_version=identity.agent_version,
            protocol_version=identity.protocol_version, protocols=identity.protocols,
        )  # fmt: skip
        self._emitter.emit(events.PEER_IDENTIFIED, content)

    def _stored(self, peer_id: str) -> bool:
        if self._peerstore is None:
            return False
        try:
            return bool(self._peerstore.has_peer(ID.from_base58(peer_id)))
        except Exception:
            return False

    # ----------------------------------------------------------- snapshots

    def fill(
        self, connections: Iterable[pb.Connection], records: Iterable[ConnectionRecord]
    ) -> None:
        """Set ``peer`` on each connection whose peer was identified; forget peers and
        connections no longer in snapshots (``records``: the registry's retained ones)."""
        self.prune(records)
        if not self._peers:
            return
        peers = self._peers
        for msg in connections:
            entry = peers.get(msg.peer_id)
            if entry is not None:
                msg.peer.CopyFrom(entry[1])

    def peer_field(self, peer_id: str) -> bytes:
        """The serialized ``Connection.peer`` field (field 100) of ``peer_id`` (base58),
        ``b""`` if it was not identified. The same bytes object until the peer says
        something new (the incremental snapshot compares it by identity)."""
        return self.peer_fields.get(peer_id, b"")

    def prune(self, records: Iterable[ConnectionRecord]) -> None:
        """Forget peers and connections no longer in snapshots (``records``: the
        registry's retained ones), as :meth:`fill` does first. Following releases
        (:meth:`follow_releases`), nothing to do (and ``records`` is not read) unless
        a connection left, a peer or address was learnt, or the last prune kept a peer
        for the peerstore's sake: the records only gain members otherwise."""
        if self._stale is False:
            return
        retained = set(records)
        for conn in [c for c in self._observed if c not in retained]:
            del self._observed[conn]
        live = {record.peer_id for record in retained}
        for peer in [p for p in self._peers if p not in live and not self._stored(p)]:
            del self._peers[peer]
            self.peer_fields.pop(peer, None)
        if self._stale is not None:  # a peer kept for the peerstore: look again next time
            self._stale = any(p not in live for p in self._peers)
