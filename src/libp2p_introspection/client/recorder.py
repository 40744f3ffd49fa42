"""The data-dump tool: record a live session into a recording file (PROTOCOL.md §5, §2).

Pull mode (the default) is the seed's loop: store the ``Runtime`` and the
first snapshot, then signal ready, receive, store, repeat; the next ready
signal goes out only once the previous snapshot is on disk, so the server
never has to hold snapshots for us. Push mode subscribes to state pushes
instead. With events on, the recorder subscribes to events and pauses the
push streams when writing falls behind (the write queue passes its high-water
mark), resuming once it drains below the low-water mark.

Every ``ServerMessage`` is written as received, one record each, and flushed:
a recorder killed at any moment leaves a file readable up to its last whole
record. Writing runs in a worker thread so a slow disk never stops the
session from being read.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import trio
from trio_websocket import ConnectionClosed

from libp2p_introspection.client.connection import (
    TOO_MANY_FRAMES,
    Command,
    IntrospectionClient,
    ProtocolError,
    Source,
    connect,
)
from libp2p_introspection.config import DEFAULT_IDLE_TIMEOUT_S
from libp2p_introspection.protocol.closecodes import CLOSE_MESSAGE_TOO_BIG
from libp2p_introspection.protocol.framing import MAX_MESSAGE_SIZE, payload_kind
from libp2p_introspection.protocol.recording import RecordingWriter

log = logging.getLogger(__name__)

#: Write-queue depth (messages) at which the recorder pauses push streams.
HIGH_WATER = 1_024
#: Depth at which it resumes them.
LOW_WATER = 128
#: Hard bound of the write queue (messages); past it, reading the socket waits.
QUEUE_CAPACITY = 8_192
#: Hard bound of the write queue in bytes (a flooding server cannot exhaust memory).
QUEUE_BYTES = 128 * 1024 * 1024
#: A server that sends nothing for this long is given up on, seconds.
IDLE_TIMEOUT_S = DEFAULT_IDLE_TIMEOUT_S


class Outcome(enum.Enum):
    """How a recording ended."""

    COMPLETED = "completed"  # --count or --duration reached
    STOPPED = "stopped"  # the user stopped it (Ctrl-C)
    SERVER_CLOSED = "server closed the connection"
    SERVER_SILENT = "the server sent nothing"
    PROTOCOL_ERROR = "the server broke the protocol"
    WRITE_FAILED = "writing the file failed"


@dataclass
class RecordStats:
    """Counts of what was written; ``bytes`` is the file size so far, bytes."""

    records: int = 0
    snapshots: int = 0
    events: int = 0
    responses: int = 0
    notices: int = 0
    runtimes: int = 0
    bytes: int = 0
    pauses: int = 0
    resumes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the recording started."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Bytes written per second so far."""
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class RecordResult:
    """What :func:`record` reports: the outcome, the counts and the close reason if any."""

    outcome: Outcome
    stats: RecordStats
    path: str
    detail: str = ""

    def summary(self) -> str:
        """One line for humans."""
        s = self.stats
        text = (
            f"{self.path}: {_count(s.records, 'record')} ({_count(s.snapshots, 'snapshot')}, "
            f"{_count(s.events, 'event')}, {_count(s.responses, 'response')}, "
            f"{_count(s.notices, 'notice')}), {_count(s.bytes, 'byte')} in "
            f"{s.elapsed:.1f} s; {self.outcome.value}"
        )
        return f"{text}: {self.detail}" if self.detail else text


def _count(n: int, noun: str) -> str:
    """``"1 response"``, ``"2 responses"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_KIND_FIELD = {
    "state": "snapshots",
    "event": "events",
    "response": "responses",
    "notice": "notices",
    "runtime": "runtimes",
}


async def record(
    url: str,
    path: str | os.PathLike[str],
    **options: Any,
) -> RecordResult:
    """Record the session at ``url`` into ``path``; see :class:`Recorder` for ``options``."""
    recorder = Recorder(url, path, **options)
    await recorder.run()
    return recorder.result()


class Recorder:
    """Records one session at ``url`` into the recording file ``path``.

    ``mode`` is ``"pull"`` or ``"push"``; ``events`` subscribes to events;
    ``count`` stops after that many snapshots (the first one included; the file
    ends with the count-th), ``duration`` after that many
    seconds (neither: until the server goes away or :meth:`run` is
    cancelled, e.g. on Ctrl-C). ``on_progress`` is called with the
    :class:`RecordStats` after each batch of writes. ``idle_timeout``: give up
    on a server that sends nothing for that many seconds. ``token``: the
    server's shared token, if it requires one. ``opener`` returns the binary
    stream to write instead of opening ``path`` (tests use it to simulate a full
    disk). Whether ``path`` can be written is checked at once (``OSError``); the
    file is created, replacing any existing one, only once the server accepted
    the session, and closed whatever happens, with every record received before
    the end written whole; read the outcome with
    :meth:`result`. A server that breaks the protocol (a bad frame, a text
    frame, an oversized or unparsable message) ends the recording with
    :attr:`Outcome.PROTOCOL_ERROR`; a disk error (a full disk) with
    :attr:`Outcome.WRITE_FAILED`.
    """

    def __init__(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        mode: str = "pull",
        events: bool = True,
        count: int | None = None,
        duration: float | None = None,
        on_progress: Callable[[RecordStats], None] | None = None,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
        idle_timeout: float = IDLE_TIMEOUT_S,
        token: str | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        opener: Callable[[], BinaryIO] | None = None,
    ) -> None:
        if mode not in ("pull", "push"):
            raise ValueError(f"mode must be 'pull' or 'push', got {mode!r}")
        self.url = url
        self.idle_timeout = idle_timeout
        self.token = token
        self.max_message_size = max_message_size
        self.path = str(path)
        self.mode = mode
        self.events = events
        self.count = count
        self.duration = duration
        self.on_progress = on_progress
        self.high_water = high_water
        self.low_water = low_water
        self.opener = opener
        self.writer: RecordingWriter | None = None  # created once connected
        self.stats = RecordStats()
        _check_writable(self.path)
        self.client: IntrospectionClient | None = None
        self.outcome = Outcome.COMPLETED
        self.detail = ""
        self.paused = False
        self.send_queue, self.receive_queue = trio.open_memory_channel[tuple[bytes, int]](
            QUEUE_CAPACITY
        )
        self.queued_bytes = 0
        self.peak_queued_bytes = 0
        #: Messages received above the client's limits (recorded unparsed).
        self.over_limit = 0
        self._room = trio.Event()
        self._write_failed = False
        self._finished = False

    async def run(self) -> None:
        """Connect and record until done. Raises ``OSError`` or ``HandshakeError``
        if it cannot connect; the file is closed in every case."""
        try:
            async with connect(
                self.url, token=self.token, max_message_size=self.max_message_size
            ) as client:
                self.client = client
                # Only now is an existing file replaced: a failed connection loses nothing.
                self.writer = (
                    RecordingWriter(self.opener(), close_stream=True)
                    if self.opener
                    else RecordingWriter(self.path)
                )
                self.stats.bytes = self.writer.bytes_written
                with trio.move_on_after(self.duration if self.duration is not None else math.inf):
                    await self._session()
        except BaseException as exc:
            if self.outcome is Outcome.COMPLETED and _is_cancellation(exc):
                self.outcome = Outcome.STOPPED
            raise
        finally:
            self.finish()

    def result(self) -> RecordResult:
        """The outcome so far (final once :meth:`run` returned or was cancelled)."""
        return RecordResult(self.outcome, self.stats, self.path, self.detail)

    async def _session(self) -> None:
        assert self.client is not None
        if self.events:
            await self.client.send(Command.PUSH_ENABLE, Source.EVENTS)
        if self.mode == "push":
            await self.client.send(Command.PUSH_ENABLE, Source.STATE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive)
            await self._write_loop()
            nursery.cancel_scope.cancel()

    async def _receive(self) -> None:
        assert self.client is not None
        try:
            while True:
                received = None
                with trio.move_on_after(self.idle_timeout):
                    received = await self.client.receive()
                if received is None:
                    self.outcome = Outcome.SERVER_SILENT
                    self.detail = f"nothing for {self.idle_timeout:g} s"
                    return
                if received.skipped:
                    # Recorded as received (it costs its bytes only; it was never parsed),
                    # and skipped, with a notice, by whatever reads the file.
                    self.over_limit += 1
                    if self.over_limit == 1:
                        log.warning("recording a message that readers will skip: %s",
                                    received.skipped)  # fmt: skip
                await self._enqueue(received.data, received.checksum)
        except ConnectionClosed as exc:
            reason = exc.reason
            if reason is not None and reason.code == CLOSE_MESSAGE_TOO_BIG:
                self.outcome = Outcome.PROTOCOL_ERROR
                self.detail = f"a message exceeded the {self.max_message_size}-byte limit"
                if (reason.reason or "").startswith(TOO_MANY_FRAMES):
                    self.detail = reason.reason
            else:
                self.outcome = Outcome.SERVER_CLOSED
                self.detail = (
                    f"code {reason.code}{' ' + reason.reason if reason.reason else ''}"
                    if reason
                    else ""
                )
        except ProtocolError as exc:
            self.outcome = Outcome.PROTOCOL_ERROR
            self.detail = str(exc)
        finally:
            # Closed synchronously, after the outcome is known: the writer drains
            # what is queued, then ends.
            self.send_queue.close()

    async def _enqueue(self, data: bytes, checksum: int) -> None:
        assert self.client is not None
        while self.queued_bytes > QUEUE_BYTES:  # a flood: let the writer catch up first
            self._room = trio.Event()
            await self._room.wait()
        self.queued_bytes += len(data)
        self.peak_queued_bytes = max(self.peak_queued_bytes, self.queued_bytes)
        await self.send_queue.send((data, checksum))
        if (
            self.events
            and not self.paused
            and self.send_queue.statistics().current_buffer_used >= self.high_water
        ):
            self.paused = True
            self.stats.pauses += 1
            await self.client.send(Command.PUSH_PAUSE, Source.EVENTS)
            log.info("writing fell behind: paused push streams")

    async def _write_loop(self) -> None:
        assert self.client is not None
        async for first in self.receive_queue:
            batch = [first]
            while len(batch) < 512:
                try:
                    batch.append(self.receive_queue.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            snapshots_before = self.stats.snapshots
            try:
                await trio.to_thread.run_sync(self._write_batch, batch)
            except OSError as exc:  # a full disk, a vanished mount: keep what is written
                self._write_failed = True
                self.outcome = Outcome.WRITE_FAILED
                self.detail = str(exc)
                return
            self.queued_bytes -= sum(len(data) for data, _ in batch)
            self._room.set()
            if self.on_progress is not None:
                self.on_progress(self.stats)
            if self._count_reached():
                return
            if (
                self.paused
                and self.receive_queue.statistics().current_buffer_used <= self.low_water
            ):
                self.paused = False
                self.stats.resumes += 1
                await self._send(Command.PUSH_RESUME, Source.EVENTS)
            if self.mode == "pull" and self.stats.snapshots > snapshots_before:
                await self._send(Command.REQUEST, Source.STATE)  # stored: ready for the next

    async def _send(self, command: int, source: int) -> None:
        assert self.client is not None
        with contextlib.suppress(ConnectionClosed):  # the receiver notices and records why
            await self.client.send(command, source)

    def _write_batch(self, batch: list[tuple[bytes, int]]) -> None:
        # Runs in a worker thread; each record is one whole write, flushed. The
        # recording ends with its count-th snapshot: what came after is not kept.
        for data, checksum in batch:
            if self._count_reached():
                return
            self._write(data, checksum)

    def _count_reached(self) -> bool:
        return self.count is not None and self.stats.snapshots >= self.count

    def _write(self, data: bytes, checksum: int) -> None:
        assert self.writer is not None
        self.writer.write(data, checksum)  # the checksum the frame header carried, verified
        self.stats.records += 1
        self.stats.bytes = self.writer.bytes_written
        kind = payload_kind(data)
        if kind in _KIND_FIELD:
            name = _KIND_FIELD[kind]
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def finish(self) -> None:
        """Write what was received but not yet written, and close the file."""
        if self._finished or self.writer is None:
            return
        self._finished = True
        try:
            while not self._write_failed and not self._count_reached():
                self._write(*self.receive_queue.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass
        except OSError as exc:
            self.outcome = Outcome.WRITE_FAILED
            self.detail = str(exc)
        finally:
            try:
                self.writer.close()
            except OSError as exc:  # the final flush of a full disk
                self.outcome = Outcome.WRITE_FAILED
                self.detail = self.detail or str(exc)


def _check_writable(path: str) -> None:
    """Fail early (``OSError``) if ``path`` cannot be written, without touching it."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "no such directory", directory)
    target = path if os.path.exists(path) else directory
    if not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "not writable", target)


def _is_cancellation(exc: BaseException) -> bool:
    """A trio cancellation, bare or (from inside nurseries) alone in exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)
