"""What a recording holds, learned in one streaming pass, and the replay clock.

:func:`scan` reads a recording once, one record at a time (constant memory,
whatever its size), and returns its :class:`RecordingShape`: its ``Runtime``,
how many snapshots and events it holds, and the timing that paces and loops a
replay (:mod:`libp2p_introspection.server.sources.replay`, PROTOCOL.md §4.10).
What the replay will skip or bend (records over the limits, absent
timestamps, snapshots that share one instant or go back in time) is logged
here, once, with its reason. :class:`Pacer` turns the recorded gaps into
release times on the replay clock, each gap capped at ``max_gap_ms``.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from dataclasses import dataclass

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingReader
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS, RecordLimits
from libp2p_introspection.server.errors import SourceError

log = logging.getLogger(__name__)

#: Longest recorded gap the replay waits out, ms of recorded time (10 minutes).
MAX_GAP_MS = 600_000
#: Base interval of a recording with fewer than two distinct ``instant_ts``, ms.
DEFAULT_INTERVAL_MS = 1_000
#: Gaps kept to take their median from; beyond this, a systematic sample of them.
_GAP_SAMPLE = 65_536


class ReplayError(SourceError):
    """The recording cannot be replayed (no ``Runtime`` or no ``State`` in it): a
    readable file with the wrong content, not a framing fault."""


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


class GapSample:
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


class Pacer:
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
    gaps = GapSample()
    untimed_states = untimed_events = unparsable = 0
    declared: dict[str, pb.EventType] = {}  # every type the file declares, first wins
    with RecordingReader(path, limits=limits) as reader:
        for record in reader:
            try:
                message = record.message()
            except Exception:  # checksums but does not parse: skipped, as in every pass
                unparsable += 1
                continue
            kind = message.WhichOneof("payload")
            if kind == "runtime":
                if runtime is None:
                    runtime = message.runtime
                for event_type in message.runtime.event_types:
                    _declare(declared, event_type, path)
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
                if message.event.type.property_types:  # told with its first event (§3)
                    _declare(declared, message.event.type, path)
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
    runtime = _declaring_every_type(runtime, declared, path)
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


#: Event types a replay's ``Runtime`` may declare at most (bounded memory, whatever
#: the file declares).
MAX_DECLARED_TYPES = 10_000


def _declare(declared: dict[str, pb.EventType], event_type: pb.EventType, path: object) -> None:
    """Note ``event_type`` as declared, unless a type of its name was (first wins)."""
    if event_type.name in declared:
        return
    if len(declared) >= MAX_DECLARED_TYPES:
        if len(declared) == MAX_DECLARED_TYPES:
            log.warning("%s: more than %d event types declared; the rest are not served "
                        "with their property types", path, MAX_DECLARED_TYPES)  # fmt: skip
            declared[""] = pb.EventType()  # the marker: warned once
        return
    copy = pb.EventType()
    copy.CopyFrom(event_type)
    declared[event_type.name] = copy


def _declaring_every_type(
    runtime: pb.Runtime, declared: dict[str, pb.EventType], path: object
) -> pb.Runtime:
    """The recording's first ``Runtime`` declaring, besides its own, every event type the
    recording declares anywhere else (a later ``Runtime``, an event carrying its
    property types), in the order first seen.

    Why (§3 vs §4.10): a replayed event is sent byte-identical to the file, so it names
    its type only unless it was the recorded first of its type; a client joining
    mid-replay would then get events of a type it was never told the property types
    of. Declaring them in the ``Runtime`` every session gets on connect tells each
    client every type, and keeps every payload byte-identical."""
    own = {event_type.name for event_type in runtime.event_types}
    extra = [t for name, t in declared.items() if name and name not in own]
    if not extra:
        return runtime
    merged = pb.Runtime()
    merged.CopyFrom(runtime)
    merged.event_types.extend(extra)
    names = ", ".join(t.name for t in extra[:5]) + (", ..." if len(extra) > 5 else "")
    log.info("%s: the served Runtime also declares %d event types declared later in the "
             "recording (%s)", path, len(extra), names)  # fmt: skip
    return merged
