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

The file is streamed, one record at a time, once to learn its shape and once
per pass: memory stays constant whatever its size. Hostile or damaged files
are served as far as they can be, never crashing the server and never
holding its event loop, and each case is logged with its reason (when the
file is scanned, or when the replay meets it):

- a record above the :class:`~libp2p_introspection.protocol.wire.RecordLimits`
  (by default 10,000 connections or 100,000 streams) is skipped;
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
import statistics
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import trio

from libp2p_introspection.abc import IntrospectionSource, SourceOutlet
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame, encode_server_message
from libp2p_introspection.protocol.recording import Record, RecordingReader
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits, measure_in_slices
from libp2p_introspection.server.errors import SourceError

log = logging.getLogger(__name__)

#: Largest value of a ``uint64`` timestamp.
MAX_TIMESTAMP = 2**64 - 1
#: Longest recorded gap the replay waits out, ms of recorded time (10 minutes).
MAX_GAP_MS = 600_000
#: Base interval of a recording with fewer than two distinct ``instant_ts``, ms.
DEFAULT_INTERVAL_MS = 1_000
#: Connections and streams shifted between two yields to the event loop.
_SHIFT_SLICE = 2_000
#: Fields walked between two yields to the event loop (a few ms of work).
_WALK_SLICE = 50_000
#: Gaps kept to take their median from; beyond this, a systematic sample of them.
_GAP_SAMPLE = 65_536


class ReplayError(SourceError):
    """The recording cannot be replayed (no ``Runtime`` or no ``State`` in it): a
    readable file with the wrong content, not a framing fault."""


class _TimeOverflow(Exception):
    """Shifting a timestamp would push it past 2^64 - 1."""


@dataclass(frozen=True, slots=True)
class RecordingShape:
    """What one streaming scan of a recording tells: enough to pace and loop it.

    Timestamps are ms since epoch (0 when absent). ``first_instant_ms``: the
    first snapshot's ``instant_ts`` (the first one that has one);
    ``median_gap_ms``: the median of the positive gaps between successive
    ``instant_ts`` values, ms of recorded time (0.0 when fewer than two
    snapshots have distinct times: no gaps); ``span_ms``: the recorded span,
    from the earliest ``instant_ts`` (the first one, unless they decrease) to
    the latest snapshot or event, plus one median gap when there are gaps (so
    that a loop pass shifted by it starts one gap after the last snapshot);
    ``spread_ms``: the latest ``instant_ts`` or event ``ts`` less the earliest
    ``instant_ts`` (a shift by more than this puts every ``instant_ts`` of a
    pass above every one of the pass before, §4.1). ``max_timestamp_ms``: the largest
    ``instant_ts``, ``start_ts`` or event ``ts`` seen. ``loopable``: whether a
    loop pass can make time rise (some snapshot has a time). ``skipped``:
    records over the limits, skipped in every pass.
    """

    runtime: pb.Runtime
    states: int
    events: int
    first_instant_ms: int
    last_instant_ms: int
    span_ms: int
    median_gap_ms: float = 0.0
    spread_ms: int = 0
    max_timestamp_ms: int = 0
    loopable: bool = True
    skipped: int = 0


class _GapSample:
    """The positive gaps between successive ``instant_ts`` values, in bounded memory.

    Every gap is kept up to :data:`_GAP_SAMPLE` of them (the median is then
    exact); past that, every second kept gap is dropped and only every
    ``stride``-th gap is kept from then on: a systematic sample whose median
    follows the recording's, whatever the file's size.
    """

    def __init__(self, capacity: int = _GAP_SAMPLE) -> None:
        self.capacity = capacity
        self.kept: list[int] = []
        self.stride = 1
        self._seen = 0

    def add(self, gap: int) -> None:
        """Count one positive gap, ms."""
        if self._seen % self.stride == 0:
            self.kept.append(gap)
            if len(self.kept) >= self.capacity:
                del self.kept[1::2]
                self.stride *= 2
        self._seen += 1

    def median(self) -> float:
        """The median gap, ms (0.0 if there is none)."""
        return float(statistics.median(self.kept)) if self.kept else 0.0


class _Pacer:
    """Replay time, ms from the first release: advanced by the recorded gaps between
    rising timestamps, each gap at most ``max_gap_ms``; a 0 (absent) or older timestamp
    does not move it. Unanchored (``anchor=0``), the first timestamp anchors it."""

    def __init__(self, anchor: int, max_gap_ms: int) -> None:
        self.high = anchor or None
        self.max_gap_ms = max_gap_ms
        self.clock_ms = 0
        #: The last gap that was longer than ``max_gap_ms`` (0 if the last one was not).
        self.cut_gap_ms = 0

    def advance(self, stamp: int) -> int:
        """The replay time at which an item stamped ``stamp`` is released, ms."""
        self.cut_gap_ms = 0
        if not stamp:
            return self.clock_ms
        if self.high is None:
            self.high = stamp
        elif stamp > self.high:
            gap = stamp - self.high
            self.high = stamp
            if gap > self.max_gap_ms:
                self.cut_gap_ms = gap
                gap = self.max_gap_ms
            self.clock_ms += gap
        return self.clock_ms


def scan(
    path: str | os.PathLike[str],
    *,
    limits: RecordLimits = DEFAULT_LIMITS,
    interval_ms: int = DEFAULT_INTERVAL_MS,
) -> RecordingShape:
    """Stream through ``path`` once and log, as warnings, whatever the replay will skip
    or bend (module doc; a gap longer than the replay waits is logged when it is met).
    Raises :class:`ReplayError` or a ``RecordingError``
    (``OSError`` if the file cannot be read)."""
    runtime: pb.Runtime | None = None
    states = events = timed_states = 0
    first = last = last_any = max_stamp = previous = 0
    earliest = 0  # the smallest instant_ts (recordings whose time decreases have one)
    backwards = 0  # snapshots whose instant_ts is below the one before
    distinct: set[int] = set()  # at most two instants: enough to tell "one time" from many
    gaps = _GapSample()
    untimed_states = untimed_events = unparsable = 0
    with RecordingReader(path, limits=limits) as reader:
        for record in reader:
            try:
                message = record.message()
            except Exception:  # checksums but does not parse: skipped, as in every pass
                unparsable += 1
                continue
            kind = message.WhichOneof("payload")
            if kind == "runtime" and runtime is None:
                runtime = message.runtime
            elif kind == "state":
                state = message.state
                instant = state.instant_ts
                max_stamp = max(max_stamp, instant, state.start_ts)
                states += 1
                if instant:
                    earliest = min(earliest, instant) if earliest else instant
                    if timed_states == 0:
                        first = instant
                    elif instant > previous:
                        gaps.add(instant - previous)
                    elif instant < previous:
                        backwards += 1
                    previous = instant
                    timed_states += 1
                    last = max(last, instant)
                    last_any = max(last_any, instant)
                    if len(distinct) < 2:
                        distinct.add(instant)
                else:
                    untimed_states += 1
            elif kind == "event":
                events += 1
                stamp = message.event.ts
                max_stamp = max(max_stamp, stamp)
                if stamp:
                    last_any = max(last_any, stamp)
                else:
                    untimed_events += 1
        if reader.truncated:
            log.warning("%s: truncated tail at offset %s ignored", path, reader.truncated_at)
        if reader.checksum_failures or unparsable:
            log.warning(
                "%s: %d records failed their checksum and %d did not parse; they are skipped",
                path, reader.checksum_failures, unparsable,
            )  # fmt: skip
        if reader.over_limit:
            log.warning(
                "%s: %d records hold more than the replay's limits allow and are skipped "
                "(first: %s)", path, reader.over_limit, reader.over_limit_reason,
            )  # fmt: skip
    skipped_note = (
        f" ({reader.over_limit} records over the expansion limits were skipped)"
        if reader.over_limit
        else ""
    )
    if runtime is None:
        raise ReplayError(
            f"{path}: the recording holds no Runtime, so it cannot be served{skipped_note}"
        )
    if states == 0:
        raise ReplayError(
            f"{path}: the recording holds no State, so it cannot be served{skipped_note}"
        )
    loopable = timed_states > 0
    if untimed_states or untimed_events:
        log.warning(
            "%s: %d snapshots and %d events have no timestamp (0): each is released with "
            "the item before it, and looping leaves its zero alone", path, untimed_states,
            untimed_events,
        )  # fmt: skip
    if not loopable:
        log.warning(
            "%s: no snapshot has an instant_ts, so there is no time to pace by: everything "
            "is released at once, and a loop would repeat the same time (played once)", path,
        )  # fmt: skip
    elif len(distinct) < 2 and states > 1:
        log.warning(
            "%s: all %d timed snapshots share instant_ts %d, so there are no gaps to pace "
            "by: they are released at once, and a loop pass lasts the %d ms base interval",
            path, timed_states, first, interval_ms,
        )  # fmt: skip
    if backwards:
        log.warning(
            "%s: %d snapshots have an instant_ts below the one before: they are served as "
            "recorded, so a client sees time go back within a pass (each loop pass is "
            "shifted above the whole of the one before)", path, backwards,
        )  # fmt: skip
    # With fewer than two distinct times there are no gaps: the base interval stands in
    # (ReplaySource.pass_length_ms).
    median_gap = gaps.median() if len(distinct) >= 2 else 0.0
    spread = max(last_any - earliest, 0)
    span = spread + math.ceil(median_gap)
    return RecordingShape(
        runtime,
        states,
        events,
        first,
        last,
        span,
        median_gap_ms=median_gap,
        spread_ms=spread,
        max_timestamp_ms=max_stamp,
        loopable=loopable,
        skipped=reader.over_limit,
    )


class ReplaySource(IntrospectionSource):
    """A recording served as a node. ``speed`` > 0 divides the recorded gaps.

    ``limits``: records above them are skipped (logged). ``interval_ms``: the
    base interval used when the recording's snapshots have fewer than two
    distinct times (the server's ``--interval-ms``). ``max_gap_ms``: longest
    recorded gap waited out. Raises :class:`ReplayError` (or another
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
        pacer = _Pacer(self.shape.first_instant_ms, self.max_gap_ms)
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
        pacer: _Pacer,
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
        walk = measure_in_slices(record.data, self.limits, _WALK_SLICE)
        while True:
            try:
                next(walk)
            except StopIteration as done:
                counts = done.value
                break
            await trio.sleep(0)
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
