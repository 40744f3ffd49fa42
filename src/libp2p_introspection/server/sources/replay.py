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
per pass: memory stays constant whatever its size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from libp2p_introspection.abc import IntrospectionSource, SourceOutlet
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame, encode_server_message
from libp2p_introspection.protocol.recording import RecordingError, RecordingReader
from libp2p_introspection.protocol.session import EventItem

log = logging.getLogger(__name__)


class ReplayError(RecordingError):
    """The recording cannot be replayed (no ``Runtime`` or no ``State`` in it)."""


@dataclass(frozen=True, slots=True)
class RecordingShape:
    """What one streaming scan of a recording tells: enough to pace and loop it.

    Timestamps are ms since epoch; ``length_ms`` is how far each loop pass is
    shifted: the span from the first snapshot to the last snapshot or event,
    plus one mean snapshot gap.
    """

    runtime: pb.Runtime
    states: int
    events: int
    first_instant_ms: int
    last_instant_ms: int
    length_ms: int


def scan(path: str | os.PathLike[str]) -> RecordingShape:
    """Stream through ``path`` once. Raises :class:`ReplayError` or a ``RecordingError``
    (``OSError`` if the file cannot be read)."""
    runtime: pb.Runtime | None = None
    states = events = 0
    first = last = last_any = 0
    unparsable = 0
    with RecordingReader(path) as reader:
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
                instant = message.state.instant_ts
                if states == 0:
                    first = instant
                states += 1
                last = max(last, instant)
                last_any = max(last_any, instant)
            elif kind == "event":
                events += 1
                last_any = max(last_any, message.event.ts)
        if reader.truncated:
            log.warning("%s: truncated tail at offset %s ignored", path, reader.truncated_at)
        if reader.checksum_failures or unparsable:
            log.warning(
                "%s: %d records failed their checksum and %d did not parse; they are skipped",
                path, reader.checksum_failures, unparsable,
            )  # fmt: skip
    if runtime is None:
        raise ReplayError(f"{path}: the recording holds no Runtime, so it cannot be served")
    if states == 0:
        raise ReplayError(f"{path}: the recording holds no State, so it cannot be served")
    mean_gap = (last - first) // (states - 1) if states > 1 else 1_000
    length = max(last_any - first, 0) + max(mean_gap, 1)
    return RecordingShape(runtime, states, events, first, last, length)


class ReplaySource(IntrospectionSource):
    """A recording served as a node. ``speed`` > 0 divides the recorded gaps.

    Raises :class:`ReplayError` (or another ``RecordingError``) at construction
    if the file cannot be replayed.
    """

    clocks_snapshots = True

    def __init__(
        self, path: str | os.PathLike[str], *, speed: float = 1.0, loop: bool = False
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.shape = scan(self.path)
        self.passes_done = 0
        self.snapshots_released = 0
        self.events_released = 0

    def runtime(self) -> pb.Runtime:
        """The recording's first ``Runtime``."""
        return self.shape.runtime

    def state(self) -> pb.State:  # pragma: no cover - the replay clocks its own snapshots
        raise NotImplementedError("a replay releases snapshots on its own clock")

    async def run(
        self, outlet: SourceOutlet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Release the recording's snapshots and events on the replay clock; loop if asked."""
        origin_ms = self.shape.first_instant_ms
        started_at = trio.current_time()
        previous_ms = origin_ms
        announced = False
        shift = 0
        while True:
            for kind, data, message in self._pass(shift):
                if kind == "state":
                    assert message is not None
                    stamp = message.state.instant_ts
                else:
                    assert message is not None
                    stamp = message.event.ts
                release_ms = max(stamp, previous_ms)
                previous_ms = release_ms
                if announced:
                    await trio.sleep_until(
                        started_at + (release_ms - origin_ms) / 1000 / self.speed
                    )
                if kind == "state":
                    outlet.publish_snapshot_frame(data)
                    self.snapshots_released += 1
                    if not announced:  # §4.10: the first snapshot is the latest from start-up
                        announced = True
                        task_status.started()
                else:
                    assert message is not None
                    _publish_event(outlet, message.event, data)
                    self.events_released += 1
            self.passes_done += 1
            if not self.loop:
                log.info("replay of %s finished after one pass", self.path)
                await trio.sleep_forever()
            shift += self.shape.length_ms

    def _pass(self, shift_ms: int) -> Iterator[tuple[str, bytes, pb.ServerMessage | None]]:
        """One pass over the file: (kind, framed bytes, parsed message) for states and events.

        Events before the first snapshot are held back until it is released, so
        start-up publishes a snapshot first.
        """
        seen_state = False
        early: list[tuple[str, bytes, pb.ServerMessage]] = []
        with RecordingReader(self.path) as reader:
            for record in reader:
                try:
                    message = record.message()
                except Exception:  # a record that checksums but does not parse
                    log.warning("%s: record at offset %d does not parse", self.path, record.offset)
                    continue
                kind = message.WhichOneof("payload")
                if kind not in ("state", "event"):
                    continue
                if shift_ms:
                    _shift(message, shift_ms)
                    frame = encode_server_message(message)
                else:
                    frame = encode_frame(record.data)  # byte-identical to the file
                if kind == "event" and not seen_state:
                    early.append((kind, frame, message))
                    continue
                yield kind, frame, message
                if kind == "state" and not seen_state:
                    seen_state = True
                    yield from early
                    early.clear()


def _publish_event(outlet: SourceOutlet, event: pb.Event, frame: bytes) -> None:
    publish_frame = getattr(outlet, "publish_event_item", None)
    if publish_frame is None:
        outlet.publish_event(event)
    else:
        publish_frame(EventItem(event.type.name, frame, frame))


def _shift(message: pb.ServerMessage, shift_ms: int) -> None:
    """Move every timestamp of a state or event forward by ``shift_ms`` (zeros stay zero)."""

    def moved(value: int) -> int:
        return value + shift_ms if value else 0

    kind = message.WhichOneof("payload")
    if kind == "event":
        message.event.ts = moved(message.event.ts)
        return
    state = message.state
    state.instant_ts = moved(state.instant_ts)
    state.start_ts = moved(state.start_ts)
    if state.subsystems.HasField("dht"):
        state.subsystems.dht.start_ts = moved(state.subsystems.dht.start_ts)
    for connection in state.subsystems.connections:
        timeline = connection.timeline
        timeline.open_ts = moved(timeline.open_ts)
        timeline.upgraded_ts = moved(timeline.upgraded_ts)
        timeline.close_ts = moved(timeline.close_ts)
        for stream in connection.streams.streams:
            stream.timeline.open_ts = moved(stream.timeline.open_ts)
            stream.timeline.close_ts = moved(stream.timeline.close_ts)
