"""The trio side of one session: its handle, and the reader, writer and pinger tasks.

:class:`SessionHandle` wraps a :class:`~libp2p_introspection.protocol.session.Session`
with what its I/O needs (a wake-up for the writer, a wake-up for a reader held
back, the cancel scope); :func:`serve_session` runs the three tasks that feed
the session what the transport reads and write what it asks, and live and die
together. Every rule is the session's: these tasks only ask it (whether it
takes input now, what to write next, whether it must close) and carry it out.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter

import trio
from trio.lowlevel import enable_ki_protection

from libp2p_introspection.protocol.closecodes import CLOSE_INTERNAL_ERROR, CLOSE_POLICY_VIOLATION
from libp2p_introspection.protocol.framing import HEADER_SIZE, payload_kind
from libp2p_introspection.protocol.session import Session
from libp2p_introspection.server.websocket import WebSocketTransport
from libp2p_introspection.server.wire_events import (
    ClosedByPeer,
    MessageReceived,
    MessageTooBig,
    PongReceived,
    ProtocolViolation,
)

log = logging.getLogger(__name__)

#: Bytes a session's writer writes without letting the loop's other tasks run (while
#: the socket takes them at once): a bound on how long one client's burst delays the
#: node and the other sessions. 16 KiB is about 64 event frames, a turn under 1 ms here
#: (bench/events.py at 20 clients: the longest turn 0.75-0.85 ms; 3-3.6 ms at 64 KiB,
#: for no less CPU per event).
WRITER_TURN_BYTES = 16 * 1024
#: Bytes the writers of all sessions together write in one pass of the scheduler
#: without yielding (:class:`PassBudget`): the bound on the node's wait for the
#: fan-out that does not grow with the subscribers (§4.9). Past it each writer sends
#: its next frame with an awaited flush, one frame per pass, as a writer always may.
PASS_BYTES = 2 * WRITER_TURN_BYTES


class PassBudget:
    """What the session writers of one server may still write in this pass of the
    scheduler without yielding, shared by all of them (bytes).

    A writer :meth:`take` s a frame's size before it writes it at once
    (``WebSocketTransport.write_now``); once the budget is spent it is refused and the
    writer awaits its flush instead, and :meth:`run` (a task of the server) refills it
    in the next pass: a task woken in one pass runs in the next, so the budget is
    refilled at most once a pass, and only in passes after one that spent it.
    ``per_pass``: bytes, at least 1.
    """

    def __init__(self, per_pass: int = PASS_BYTES) -> None:
        if per_pass < 1:
            raise ValueError(f"per_pass must be at least 1 byte, not {per_pass}")
        self.per_pass = per_pass
        self.left = per_pass
        self._spent = trio.Event()

    def take(self, size: int) -> bool:
        """``True`` if a frame of ``size`` bytes may be written now (then counted);
        ``False`` once the pass's budget is spent (a refill is asked for)."""
        if self.left <= 0:
            self._spent.set()
            return False
        self.left -= size
        return True

    async def run(self) -> None:
        """Refill the budget in the pass after one that spent it, until cancelled."""
        while True:
            await self._spent.wait()
            self._spent = trio.Event()
            self.left = self.per_pass


class SessionHandle:
    """A session plus what its I/O tasks need: a wake-up for the writer and a cancel scope.

    ``peer`` names the client in logs. The hub calls :meth:`notify` (synchronously)
    after it gives the session something; the tasks wait with :meth:`wait` and
    :meth:`wait_readable`.
    """

    def __init__(self, session: Session, peer: str) -> None:
        self.session = session
        self.peer = peer
        self.cancel_scope: trio.CancelScope | None = None
        #: Frames actually written to the socket, by payload kind.
        self.sent: Counter[str] = Counter()
        #: The frame handed to the wire and not yet known to be written, with the
        #: wire's byte mark past which it is (``ServerWire.bytes_sent``).
        self._in_flight: tuple[bytes, int] | None = None
        self._wakeup = trio.Event()
        self._readable = trio.Event()

    def notify(self) -> None:
        """Wake the writer if there is something to send or the session must end."""
        session = self.session
        if session.close is not None:
            self.cancel()
        if session.has_frames or session.close is not None:
            self._wakeup.set()

    def cancel(self) -> None:
        """Cancel the session's I/O (it must end, or the server stops)."""
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()

    async def wait(self) -> None:
        """Sleep until :meth:`notify` finds work; returns at once if there already is some."""
        if self.session.has_frames or self.session.close is not None:
            return
        self._wakeup = trio.Event()
        await self._wakeup.wait()

    def frame_queued(self, frame: bytes, mark: int) -> None:
        """The writer handed ``frame`` to the wire; it is written once the wire's
        ``bytes_sent`` reaches ``mark``."""
        self._in_flight = (frame, mark)

    def frame_written(self, frame: bytes, now: float) -> None:
        """The writer wrote ``frame`` (the one it last took): tell the session, count it,
        and wake a reader held back by a full queue if the session takes input again."""
        self._in_flight = None
        self.session.frame_sent(now)
        self._count(frame)
        if self.session.accepts_input:
            self._readable.set()

    def settle(self, bytes_sent: int) -> None:
        """After the close: count the frame the writer was cancelled on if the close
        finished writing it (§4.6: the frame in flight goes out before the close frame),
        ``bytes_sent`` being the wire's count once the connection is closed."""
        if self._in_flight is not None:
            frame, mark = self._in_flight
            self._in_flight = None
            if bytes_sent >= mark:
                self._count(frame)

    def _count(self, frame: bytes) -> None:
        self.sent[payload_kind(memoryview(frame)[HEADER_SIZE:])] += 1

    async def wait_readable(self) -> None:
        """Sleep until the session takes input again (:attr:`Session.accepts_input`);
        returns at once if it does."""
        while not self.session.accepts_input:
            self._readable = trio.Event()
            await self._readable.wait()


async def serve_session(
    transport: WebSocketTransport,
    handle: SessionHandle,
    *,
    ping_interval_s: float,
    pong_timeout_s: float,
    budget: PassBudget,
) -> None:
    """Run the session's reader, writer and pinger until one of them ends the session
    (the client left, the session closed, the pongs stopped) or the caller is cancelled.

    ``ping_interval_s``: seconds between pings; ``pong_timeout_s``: how long a pong
    may take, seconds, from when the socket took the ping (past it: 1008);
    ``budget``: the server's :class:`PassBudget`, shared by every session's writer
    (its :meth:`PassBudget.run` must be running).
    """
    pings = _Pings()
    with trio.CancelScope() as scope:
        handle.cancel_scope = scope
        async with trio.open_nursery() as nursery:
            cancel = nursery.cancel_scope
            nursery.start_soon(_reader, transport, handle, pings, cancel)
            nursery.start_soon(_writer, transport, handle, budget, cancel)
            nursery.start_soon(_pinger, transport, handle, pings, ping_interval_s, pong_timeout_s)


@enable_ki_protection
async def _pinger(
    transport: WebSocketTransport,
    handle: SessionHandle,
    pings: _Pings,
    interval: float,
    timeout: float,
) -> None:
    # A session whose pongs stop is dead (a vanished peer, a half-open TCP
    # connection); a paused client still answers pings and stays. The pong
    # timeout counts from when the socket took the ping: a slow reader of a
    # large frame is governed by the write timeout instead.
    while handle.session.close is None:
        await trio.sleep(interval)
        if not await transport.ping(pings.next()):
            return
        with trio.move_on_after(timeout) as waited:
            await pings.answered.wait()
        if waited.cancelled_caught:
            handle.session.end(
                CLOSE_POLICY_VIOLATION, f"no pong within {timeout:g} s: session is dead"
            )
            handle.notify()
            return


@enable_ki_protection
async def _reader(
    transport: WebSocketTransport,
    handle: SessionHandle,
    pings: _Pings,
    scope: trio.CancelScope,
) -> None:
    session = handle.session
    while session.close is None:
        # Backpressure (§4.6): the session says when it takes input; until then
        # nothing is read, and TCP pushes back on the client.
        await handle.wait_readable()
        event = await transport.next_event()
        if isinstance(event, ClosedByPeer):
            break
        if isinstance(event, PongReceived):
            pings.pong(event.payload)
            continue
        now = trio.current_time()
        if isinstance(event, ProtocolViolation):
            log.info("session %s: %s (%d)", handle.peer, event.reason, event.code)
            session.end(event.code, event.reason)
        elif isinstance(event, MessageTooBig):
            # The session decides the close.
            session.receive_oversized(event.size, now, max_frames=event.max_frames)
        elif isinstance(event, MessageReceived):
            try:
                if isinstance(event.data, bytes):
                    session.receive_command(event.data, now)
                else:
                    session.receive_text(event.data, now)
            except Exception:
                # A fault of ours on this input: it ends this session only (§4.9).
                log.exception("session %s: internal error handling a command", handle.peer)
                session.end(CLOSE_INTERNAL_ERROR, "internal error handling the command")
        handle.notify()
    scope.cancel()


@enable_ki_protection
async def _writer(
    transport: WebSocketTransport,
    handle: SessionHandle,
    budget: PassBudget,
    scope: trio.CancelScope,
) -> None:
    session = handle.session
    turn = 0  # bytes written since the writer last let the other tasks run
    while session.close is None:
        frame = session.next_frame()
        if frame is None:
            turn = 0
            await handle.wait()
            continue
        # Cancelled half-way (the session closed), the rest of the frame stays
        # queued in the wire and the close finishes it first (§4.6); the handle
        # counts it then (SessionHandle.settle).
        mark = transport.queue_binary(frame)
        if mark is None:
            break
        handle.frame_queued(frame, mark)
        # A run of frames the socket takes at once goes out in this turn, one write
        # each (an event fan-out: else each session sends one frame per pass of the
        # scheduler, and a node that emits a burst of events outruns its clients);
        # past WRITER_TURN_BYTES, once all the writers spent the pass's budget
        # (PASS_BYTES), or when the socket is full, the writer waits its turn.
        turn += len(frame)
        if turn > WRITER_TURN_BYTES or not budget.take(len(frame)) or not transport.write_now(mark):
            turn = 0
            await transport.flush(mark)
        if transport.lost:
            break
        handle.frame_written(frame, trio.current_time())
    scope.cancel()


class _Pings:
    """The one ping in flight of a session: its payload and whether its pong came."""

    def __init__(self) -> None:
        self._count = 0
        self._payload = b""
        self.answered = trio.Event()

    def next(self) -> bytes:
        """A fresh payload for the next ping (and a fresh event for its pong)."""
        self._count += 1
        self._payload = struct.pack("!Q", self._count)
        self.answered = trio.Event()
        return self._payload

    def pong(self, payload: bytes) -> None:
        """A pong arrived; it answers the ping in flight if it echoes its payload."""
        if payload == self._payload:
            self.answered.set()
