"""The hooks that see a connection's and its streams' endings when they happen.

For each connection the registry registers, :class:`EndingHooks` installs
:mod:`~libp2p_introspection.introspector.endings`' hooks (``SwarmConn.close``,
the muxer's stream bookkeeping, the security session's failures) and, for
each stream, its muxed stream's ``reset()``; what they learn goes into the
records (``closed_by``, ``failure``, ``reset_locally``), and a stream that
py-libp2p's state says is over is handed to the registry's ``finish``
callback at once (the next snapshot would find it too).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from libp2p_introspection.introspector import endings, records
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.records import ConnectionRecord, StreamRecord
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.clock import ClockMs

logger = logging.getLogger(__name__)

#: ``finish(stream_record, now)``: end a stream as its py-libp2p state says (now: ms).
Finish = Callable[[StreamRecord, int], None]


class EndingHooks:
    """Ending hooks of one registry's connections and streams.

    :param patcher: the introspector's patcher (every hook is undone with it).
    :param clock_ms: wall clock, ms since epoch.
    :param finish: the registry's way to end a stream whose state says it is over.
    """

    def __init__(self, patcher: InstancePatcher, clock_ms: ClockMs, finish: Finish) -> None:
        self._patcher = patcher
        self._clock_ms = clock_ms
        self._finish = finish
        #: Muxed stream (yamux/mplex) -> record of its ``NetStream``, for the muxer hooks.
        self._by_muxed: dict[Any, StreamRecord] = {}

    def forget(self, stream_record: StreamRecord) -> None:
        """Stop following an ended stream's muxed stream."""
        if stream_record.muxed is not None:
            with contextlib.suppress(TypeError):  # unhashable: never in the map
                self._by_muxed.pop(stream_record.muxed, None)

    def hook_connection(self, record: ConnectionRecord, conn: Any) -> None:
        """Install the hooks that see this connection's and its streams' endings."""
        muxed_conn = getattr(conn, "muxed_conn", None)

        def failed(exc: BaseException) -> None:
            self._note_failure(record, exc)

        def before_close() -> None:
            closed = getattr(conn, "is_closed", False)
            if record.status == pb.ACTIVE and not record.closed_by and not closed:
                local = not endings.muxer_shutting_down(muxed_conn)
                record.closed_by = endings.CLOSED_LOCALLY if local else endings.CLOSED_BY_REMOTE

        endings.hook_close(self._patcher, conn, before_close)
        record.hooked.append(conn)
        if muxed_conn is None:
            return
        if endings.hook_muxer(
            self._patcher, muxed_conn, stream_changed=self._stream_changed, failed=failed
        ):
            record.hooked.append(muxed_conn)
        secured = tp.MUXER_SECURED_CONN.get(muxed_conn)
        if secured is not None:
            endings.hook_failures(self._patcher, secured, failed)
            record.hooked.append(secured)

    def _note_failure(self, record: ConnectionRecord, exc: BaseException) -> None:
        """Keep the first I/O failure of a connection that is up (not one caused by closing it)."""
        if record.failure or record.status != pb.ACTIVE or records.closing(record):
            return
        failure = endings.failure_of(exc)
        if failure:
            record.failure = failure

    def hook_stream(self, stream_record: StreamRecord, muxed: Any) -> None:
        """Note ``muxed`` (the stream's yamux/mplex stream) and hook its ``reset()``."""
        if muxed is None:
            return
        stream_record.muxed = muxed
        stream_record.wire_ended = endings.ended_probe(muxed, stream_record.stream)
        try:
            self._by_muxed[muxed] = stream_record
        except TypeError:
            logger.debug("introspector: muxed stream not hashable; endings read at snapshots")

        def before_reset() -> None:
            # A local reset of a stream still live on the wire; one the remote
            # already reset, or one reset by the connection's teardown, is not.
            if stream_record.status != pb.ACTIVE or records.closing(stream_record.conn):
                return
            ended, _ = endings.wire_end(muxed)
            if not ended:
                stream_record.reset_locally = True

        def after_reset() -> None:
            if stream_record.status == pb.ACTIVE and records.wire_ended(stream_record):
                self._finish(stream_record, self._clock_ms())

        endings.hook_stream(
            self._patcher, muxed, before_reset=before_reset, after_reset=after_reset
        )

    def _stream_changed(self, muxed: Any) -> None:
        """Muxer hook: py-libp2p processed a close, FIN or reset of ``muxed``."""
        try:
            stream_record = self._by_muxed.get(muxed)
        except TypeError:
            return
        active = stream_record is not None and stream_record.status == pb.ACTIVE
        if active and records.wire_ended(stream_record):
            self._finish(stream_record, self._clock_ms())
