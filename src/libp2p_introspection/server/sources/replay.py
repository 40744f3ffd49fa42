"""Serve a recording as a live node (PROTOCOL.md §4.10): ``serve --source FILE``.

The recording's ``Runtime`` is the server's; its snapshots are the server's
sequence, released on one clock paced by the recorded gaps between
``instant_ts`` values divided by ``speed``; events are released in file
order, each at max(its ``ts``, the previous release) on the same clock. The
first recorded snapshot is the latest one from start-up. On the first pass
payloads are sent byte-identical to the file. With ``loop``, each later pass
shifts every timestamp of the pass (``instant_ts``, ``start_ts``, connection
and stream timelines, the DHT's ``start_ts``, event ``ts``) by a whole number
of recording lengths, so time keeps rising and §4.1 holds.

The file is streamed, one record at a time, once to learn its shape
(:mod:`~libp2p_introspection.server.sources.replay_scan`) and once per pass:
memory stays constant whatever its size. Hostile or damaged files
are served as far as they can be, never crashing the server and never
holding its event loop, and each case is logged with its reason (when the
file is scanned, or when the replay meets it):

- a record above the :class:`~libp2p_introspection.protocol.wire.RecordLimits`
  (by default 40,000 connections or 100,000 streams) is skipped;
- a timestamp of 0 is absent (§3): the item is released with the one before
  it, and its zero is never shifted. A recording whose snapshots all lack
  ``instant_ts`` is played once (looping could not make time rise);
- a recording whose snapshots share one ``instant_ts`` has no gaps to pace
  by: they are released at once, its base interval is ``interval_ms`` (the
  server's ``--interval-ms``), and a loop pass lasts that base interval (§4.10);
- a recorded gap longer than ``max_gap_ms`` (a clock jump, a corrupt
  timestamp near 2^64) is waited out as ``max_gap_ms``;
- a shift that would push a timestamp past 2^64 - 1 ends the loop (§4.10);
- the work on one record (walking, parsing, shifting, encoding) yields to the
  event loop every few milliseconds, so a big snapshot never keeps the server
  from answering a handshake.

The replay declares its base interval (:attr:`ReplaySource.base_interval_ms`,
§4.10): max(1, round(median of the positive gaps between successive
``instant_ts`` ÷ speed)) ms (round half up; a median above ``max_gap_ms``
counts as ``max_gap_ms``, as it is waited), or ``interval_ms`` when fewer
than two snapshots have distinct times. The server builds its session limits from it, so a client
asking for the recording's own interval gets every snapshot.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import trio

from libp2p_introspection.abc import IntrospectionSource, SourceOutlet
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame, encode_server_message
from libp2p_introspection.protocol.recording import Record, RecordingReader
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits, measure_paced
from libp2p_introspection.server.errors import ServerError
from libp2p_introspection.server.sources.replay_scan import (
    DEFAULT_INTERVAL_MS,
    MAX_GAP_MS,
    Pacer,
    scan,
)

log = logging.getLogger(__name__)

#: Largest value of a ``uint64`` timestamp.
MAX_TIMESTAMP = 2**64 - 1
#: Connections and streams shifted between two yields to the event loop.
_SHIFT_SLICE = 2_000


class _TimeOverflow(ServerError):
    """Shifting a timestamp would push it past 2^64 - 1."""


class ReplaySource(IntrospectionSource):
    """A recording served as a node. ``speed`` > 0 divides the recorded gaps.

    ``limits``: records above them are skipped (logged). ``interval_ms``: the
    base interval used when the recording's snapshots have fewer than two
    distinct times (the server's ``--interval-ms``). ``max_gap_ms``: longest
    recorded gap waited out. Raises
    :class:`~libp2p_introspection.server.sources.replay_scan.ReplayError` (or another
    ``RecordingError``) at construction if the file cannot be replayed, and
    ``ValueError`` for a non-positive ``speed`` or ``interval_ms``.

    :attr:`base_interval_ms` is the interval the snapshots come at (§4.10),
    which the server takes as its base interval; :attr:`pass_length_ms` is
    how far each loop pass shifts the timestamps, ms of recorded time:
    max(recorded span, the base interval at this speed), and always more than
    the recording's spread, so that every ``instant_ts`` of a pass is above
    every one of the pass before (§4.1), even in a recording whose time goes
    back.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        loop: bool = False,
        limits: RecordLimits = DEFAULT_LIMITS,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        max_gap_ms: int = MAX_GAP_MS,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if interval_ms < 1:
            raise ValueError(f"interval_ms must be positive, got {interval_ms}")
        self.path = Path(path)
        self.speed = speed
        self.limits = limits
        self.max_gap_ms = max_gap_ms
        self.shape = scan(self.path, limits=limits, interval_ms=interval_ms)
        self.loop = loop and self.shape.loopable
        # A gap longer than max_gap_ms is waited as max_gap_ms, and so counts as that.
        median_gap = min(self.shape.median_gap_ms, max_gap_ms)
        #: The interval between snapshots, ms of replay time (§4.10): the server's base.
        self.base_interval_ms = (
            max(1, math.floor(median_gap / speed + 0.5)) if median_gap else interval_ms
        )
        #: How far each loop pass shifts timestamps, ms of recorded time (§4.10).
        self.pass_length_ms = max(
            self.shape.span_ms, math.ceil(self.base_interval_ms * speed), self.shape.spread_ms + 1
        )
        self.passes_done = 0
        self.snapshots_released = 0
        self.events_released = 0
        #: Why the replay stopped looping early ("" if it did not).
        self.stopped_because = ""

    def runtime(self) -> pb.Runtime:
        """The recording's first ``Runtime``."""
        return self.shape.runtime

    async def run(
        self, outlet: SourceOutlet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Release the recording's snapshots and events on the replay clock; loop if asked.

        Returns never (after the last pass it waits, keeping the last snapshot served).
        """
        pacer = Pacer(self.shape.first_instant_ms, self.max_gap_ms)
        started_at = trio.current_time()
        shift = 0
        while True:
            try:
                async with aclosing(self._pass(shift)) as items:
                    async for item in items:
                        await self._release(outlet, item, pacer, started_at, task_status)
            except _TimeOverflow as exc:
                self._stop_looping(f"in pass {self.passes_done + 1}: {exc} (§4.10)")
                break
            self.passes_done += 1
            if not self.loop:
                log.info("replay of %s finished after one pass", self.path)
                break
            next_shift = shift + self.pass_length_ms
            if self.shape.max_timestamp_ms + next_shift > MAX_TIMESTAMP:
                self._stop_looping(
                    f"after pass {self.passes_done}: the next would shift timestamp "
                    f"{self.shape.max_timestamp_ms} by {next_shift} ms, past 2^64 - 1 (§4.10)"
                )
                break
            shift = next_shift
        if not self.snapshots_released:  # pragma: no cover - scan() guarantees a snapshot
            task_status.started()
        await trio.sleep_forever()

    async def _release(
        self,
        outlet: SourceOutlet,
        item: tuple[str, bytes, int, pb.ServerMessage],
        pacer: Pacer,
        started_at: float,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """Publish one item at its time on the replay clock (the first snapshot at once)."""
        kind, frame, stamp, message = item
        release_ms = pacer.advance(stamp)
        if pacer.cut_gap_ms and not self.passes_done:
            log.warning(
                "replay of %s: the %s stamped %d comes %d ms after the item before it "
                "(a clock jump or a corrupt timestamp); waited as %d ms",
                self.path, kind, stamp, pacer.cut_gap_ms, self.max_gap_ms,
            )  # fmt: skip
        if self.snapshots_released:
            await trio.sleep_until(started_at + release_ms / 1000 / self.speed)
        if kind == "state":
            outlet.publish_snapshot(frame)
            self.snapshots_released += 1
            if self.snapshots_released == 1:  # §4.10: the first is the latest from start-up
                task_status.started()
        else:
            outlet.publish_event(message.event, frame)
            self.events_released += 1

    def _stop_looping(self, reason: str) -> None:
        self.stopped_because = reason
        log.warning("replay of %s stops looping %s", self.path, reason)

    async def _pass(
        self, shift_ms: int
    ) -> AsyncIterator[tuple[str, bytes, int, pb.ServerMessage]]:
        """One pass over the file: (kind, framed bytes, timestamp, parsed message) for
        states and events, each record's work sliced with yields to the event loop.

        Events before the first snapshot are released right after it, so start-up
        publishes a snapshot first: the file is read up to that snapshot, then
        its head again for those events (constant memory, whatever precedes it).
        Raises :class:`_TimeOverflow`.
        """
        with RecordingReader(self.path, limits=None) as reader:
            records = iter(reader)
            first_offset = None
            for record in records:
                item = await self._prepare(record, shift_ms, ("state",))
                if item is not None:
                    first_offset = record.offset
                    yield item
                    break
            if first_offset is None:
                return
            with RecordingReader(self.path, limits=None) as head:
                for record in head:
                    if record.offset >= first_offset:
                        break
                    item = await self._prepare(record, shift_ms, ("event",))
                    if item is not None:
                        yield item
            for record in records:
                item = await self._prepare(record, shift_ms, ("state", "event"))
                if item is not None:
                    yield item

    async def _prepare(
        self, record: Record, shift_ms: int, kinds: tuple[str, ...]
    ) -> tuple[str, bytes, int, pb.ServerMessage] | None:
        """Walk, parse, shift and frame one record of one of ``kinds`` (``None``: skipped,
        or another kind), yielding to the event loop between slices of the work."""
        # A checkpoint per record, whatever follows: a pass over many skipped
        # records must not run through them in one go.
        await trio.sleep(0)
        counts = await measure_paced(record.data, self.limits, trio.lowlevel.checkpoint)
        if not counts.ok:  # scan() logged it (over the limits, or not protobuf)
            return None
        if counts.kind not in kinds:
            return None
        try:
            message = record.message()
        except Exception:  # a record that checksums but does not parse (scan() logged it)
            return None
        kind = message.WhichOneof("payload")
        if kind not in kinds:  # pragma: no cover - the walk and the parser agree on the kind
            return None
        if shift_ms:
            await _shift(message, shift_ms)
            await trio.sleep(0)
            frame = encode_server_message(message)
        else:
            frame = encode_frame(record.data)  # byte-identical to the file
        stamp = message.state.instant_ts if kind == "state" else message.event.ts
        return kind, frame, stamp, message


def _moved(value: int, shift_ms: int) -> int:
    """``value`` shifted by ``shift_ms`` (0, absent, stays 0); raises :class:`_TimeOverflow`."""
    if not value:
        return 0
    moved = value + shift_ms
    if moved > MAX_TIMESTAMP:
        raise _TimeOverflow(f"shifting timestamp {value} by {shift_ms} ms passes 2^64 - 1")
    return moved


async def _shift(message: pb.ServerMessage, shift_ms: int) -> None:
    """Move every timestamp of a state or event forward by ``shift_ms`` (zeros stay zero),
    yielding to the event loop every few thousand connections and streams.

    Raises :class:`_TimeOverflow` (the message is then partly shifted: drop it).
    """
    kind = message.WhichOneof("payload")
    if kind == "event":
        message.event.ts = _moved(message.event.ts, shift_ms)
        return
    state = message.state
    state.instant_ts = _moved(state.instant_ts, shift_ms)
    state.start_ts = _moved(state.start_ts, shift_ms)
    if state.subsystems.HasField("dht"):
        state.subsystems.dht.start_ts = _moved(state.subsystems.dht.start_ts, shift_ms)
    work = 0
    for connection in state.subsystems.connections:
        timeline = connection.timeline
        timeline.open_ts = _moved(timeline.open_ts, shift_ms)
        timeline.upgraded_ts = _moved(timeline.upgraded_ts, shift_ms)
        timeline.close_ts = _moved(timeline.close_ts, shift_ms)
        streams = connection.streams.streams
        for stream in streams:
            stream.timeline.open_ts = _moved(stream.timeline.open_ts, shift_ms)
            stream.timeline.close_ts = _moved(stream.timeline.close_ts, shift_ms)
        work += 1 + len(streams)
        if work >= _SHIFT_SLICE:
            work = 0
            await trio.sleep(0)
