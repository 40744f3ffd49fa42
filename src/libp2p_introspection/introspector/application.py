"""The application's own data on a live host: its event types, its events, its tags.

PROTOCOL.md §3.1 ("Applications add their own types through the library API")
and the seed's "or other source providers": an application that introspects
its host also reports what only it knows. :class:`ApplicationData` is reached
as :attr:`HostIntrospector.application
<libp2p_introspection.introspector.HostIntrospector.application>`, and through
the object ``attach_introspection`` yields. The rules a declaration, an event
and a tag must follow are :mod:`libp2p_introspection.protocol.application`'s;
every refusal raises :class:`~libp2p_introspection.protocol.application.ApplicationDataError`
(a ``ValueError``) before anything is changed or sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from libp2p.abc import INetConn, INetStream
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from libp2p_introspection.introspector import conninfo
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.connections import ConnectionRegistry
from libp2p_introspection.protocol import application, pb
from libp2p_introspection.protocol.application import ApplicationDataError
from libp2p_introspection.protocol.clock import ClockMs
from libp2p_introspection.protocol.events import EventEmitter, EventSpec, Property

__all__ = ["ApplicationData", "ApplicationDataError"]


def _plain(value: Any) -> Any:
    """py-libp2p's ``ID`` as base58 and ``Multiaddr`` as text; lists item by item."""
    if isinstance(value, ID):
        return value.to_base58()
    if isinstance(value, Multiaddr):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _check_multiaddrs(spec: EventSpec, content: Mapping[str, Any]) -> None:
    """Every MULTIADDR value parses as a multiaddr (py-libp2p's ``multiaddr`` package)."""
    for prop in spec.properties:
        if prop[1] != application.events.MULTIADDR:
            continue
        values = content[prop[0]]
        for value in values if isinstance(values, list) else [values]:
            try:
                Multiaddr(value)
            except Exception as exc:
                raise ApplicationDataError(
                    f"{spec.name}.{prop[0]}: {value!r:.80} is not a multiaddr ({exc})"
                ) from None


class ApplicationData:
    """Event types the application declares, the events it publishes, and its tags
    on connections and streams.

    :param swarm: the host's ``Swarm`` (its ``get_connections()``, to find a peer's
        connections and connections not yet registered).
    :param registry: the introspector's connection registry (the tags live on its
        records, so they go when the record goes).
    :param emitter: the introspector's event emitter: application events take the
        path of the built-in ones, to every subscribed client.
    :param clock_ms: ms since epoch, the default ``Event.ts``.
    :param on_declared: called after each new declaration (the introspector tells
        the running server its ``Runtime`` grew).
    """

    def __init__(
        self,
        swarm: Any,
        registry: ConnectionRegistry,
        emitter: EventEmitter,
        clock_ms: ClockMs,
        on_declared: Callable[[], None] = lambda: None,
    ) -> None:
        self._swarm = swarm
        self._registry = registry
        self._emitter = emitter
        self._clock_ms = clock_ms
        self._on_declared = on_declared
        self._types: dict[str, EventSpec] = {}

    # ----------------------------------------------------------------- events

    @property
    def specs(self) -> tuple[EventSpec, ...]:
        """The declared types, in declaration order (they follow the built-in ones in
        ``Runtime.event_types``)."""
        return tuple(self._types.values())

    def declare_event_type(
        self, name: str, properties: Iterable[Property] | Mapping[str, Any]
    ) -> EventSpec:
        """Declare an event type of the application's own; returns its spec.

        From then on it is in the ``Runtime`` every new session is sent (PROTOCOL.md
        §4.2); a session opened before gets its property types with the first event
        of the type (§3 ``Event.type``).

        :param name: e.g. ``"ChatMessage"``: a letter, then letters, digits, ``_ . : -``
            (at most 128), not a built-in type's name.
        :param properties: ``[(name, type), (name, type, has_multiple), ...]`` in content
            order, or a mapping ``{name: type}`` / ``{name: (type, has_multiple)}``;
            ``type`` is a ``pb.EventType.EventProperty.PropertyType`` value or its name
            (``"STRING"``, ``"NUMBER"``, ``"TIME"`` (ms since epoch), ``"PEERID"``,
            ``"MULTIADDR"``, ``"JSON"``); ``has_multiple``: the value is a list.
        :raises ApplicationDataError: a bad name or property, a built-in type's name,
            or ``name`` already declared with other properties (the same ones again
            is no error and changes nothing).
        """
        spec = application.declare(name, properties, self._types)
        if name not in self._types:
            self._types[name] = spec
            self._on_declared()
        return spec

    def publish_event(
        self, name: str, content: Mapping[str, Any], *, ts: int | None = None
    ) -> None:
        """Publish one event of a declared type to every client subscribed to events.

        :param content: exactly the declared property names -> values of their types
            (see :mod:`~libp2p_introspection.protocol.application`); a py-libp2p
            ``ID`` is written as base58 and a ``Multiaddr`` as text.
        :param ts: ``Event.ts``, ms since epoch; default: now.
        :raises ApplicationDataError: ``name`` not declared, or content that does not
            match the declaration. Nothing is sent then. Without a running server
            (or with no subscriber) a valid event goes nowhere, silently.
        """
        spec = self._types.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ApplicationDataError(
                f"event type {name!r} is not declared: call declare_event_type first"
            )
        if isinstance(content, Mapping):
            content = {key: _plain(value) for key, value in content.items()}
        ordered = application.check_content(spec, content)
        _check_multiaddrs(spec, ordered)
        stamp = self._clock_ms() if ts is None else application.check_ts(ts)
        self._emitter.emit(spec, ordered, ts=stamp)

    # ------------------------------------------------------------------- tags

    def tag_connection(self, target: INetConn | ID | str, *tags: str) -> int:
        """Add ``tags`` to a connection's ``Connection.user_provided_tags``.

        :param target: a ``SwarmConn`` of this host (``host.get_network().get_connections()``,
            ``stream.muxed_conn``'s swarm connection), or a peer id (``ID`` or base58):
            every connection open to that peer now (not later ones).
        :returns: how many connections were tagged.
        :raises ApplicationDataError: bad tags, more than 64 on one connection, or no
            open connection matches ``target``.

        Tags stay on the connection for its life, shown while it is retained (as
        CLOSED too), and go with it. A tag given twice is kept once.
        """
        checked = application.check_tags(tags)
        records = self._connection_records(target)
        for record in records:
            self._add(record.tags, checked, "connection")
        return len(records)

    def untag_connection(self, target: INetConn | ID | str, *tags: str) -> int:
        """Remove ``tags`` from a connection (as :meth:`tag_connection` finds it); tags it
        does not have are ignored. Returns how many connections matched."""
        checked = application.check_tags(tags)
        records = self._connection_records(target)
        for record in records:
            record.tags[:] = [tag for tag in record.tags if tag not in checked]
        return len(records)

    def tag_stream(self, stream: INetStream, *tags: str) -> None:
        """Add ``tags`` to a stream's ``Stream.user_provided_tags``.

        :param stream: an open ``NetStream`` of this host (``host.new_stream(...)``, or
            the one a stream handler gets).
        :raises ApplicationDataError: bad tags, more than 64 on the stream, or a stream
            that is not an open stream of this host. The tags go with the stream.
        """
        checked = application.check_tags(tags)
        record = self._stream_record(stream)
        self._add(record.tags, checked, "stream")
        self._registry.touch_stream(record)

    def untag_stream(self, stream: INetStream, *tags: str) -> None:
        """Remove ``tags`` from a stream; tags it does not have are ignored.

        :raises ApplicationDataError: as :meth:`tag_stream`.
        """
        checked = application.check_tags(tags)
        record = self._stream_record(stream)
        record.tags[:] = [tag for tag in record.tags if tag not in checked]
        self._registry.touch_stream(record)

    @staticmethod
    def _add(current: list[str], tags: list[str], what: str) -> None:
        new = [tag for tag in dict.fromkeys(tags) if tag not in current]
        if len(current) + len(new) > application.MAX_TAGS:
            raise ApplicationDataError(f"at most {application.MAX_TAGS} tags on one {what}")
        current.extend(new)

    def _connection_records(self, target: Any) -> list[Any]:
        registry = self._registry
        live = conninfo.swarm_connections(self._swarm)
        if isinstance(target, ID | str):
            try:
                peer = target if isinstance(target, ID) else ID.from_base58(target)
            except Exception:
                raise ApplicationDataError(f"{target!r:.80} is not a peer id") from None
            wanted = peer.to_base58()
            conns = [c for c in live if conninfo.peer_id_str(c) == wanted]
            what = f"peer {wanted}"
        else:
            conns = [c for c in live if c is target]
            what = "this connection"
        records = [
            registry.on_connected(conn)  # registered already, or now (as reconcile would)
            for conn in conns
            if not getattr(conn, "is_closed", False)
        ]
        records = [record for record in records if record.status == pb.ACTIVE]
        if not records:
            raise ApplicationDataError(f"no open connection of this host to {what}")
        return records

    def _stream_record(self, stream: Any) -> Any:
        record = self._registry.stream_record(stream)
        if record is None and isinstance(stream, INetStream):
            # Not seen yet (its notification still on the way): registered now, as
            # reconcile would, if it is a stream of one of this host's connections.
            conn = tp.STREAM_SWARM_CONN.get(stream)
            if any(conn is live for live in conninfo.swarm_connections(self._swarm)):
                record = self._registry.on_stream_opened(stream)
        if record is None or record.status != pb.ACTIVE:
            raise ApplicationDataError("not an open stream of this host")
        return record
