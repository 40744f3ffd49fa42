"""The server side of one client session, as a pure state machine (PROTOCOL.md §4).

Every session rule of the protocol lives in this module, and nothing else
does: no sockets, no clocks, no tasks. The I/O adapter
(:mod:`libp2p_introspection.server.websocket`) feeds a :class:`Session`
with what happened and carries out what it asks:

inputs
    :meth:`Session.receive_command` (a binary WebSocket message),
    :meth:`Session.receive_text` (a text message),
    :meth:`Session.snapshot_produced` (the server-wide clock made a snapshot),
    :meth:`Session.event_produced` (the node emitted an event),
    :meth:`Session.tick` (time passed), :meth:`Session.write_progress` (the
    socket accepted part of a frame), :meth:`Session.write_pending` (the
    adapter has bytes of its own waiting for the socket, or no longer has),
    :meth:`Session.frame_sent` (the adapter finished writing the frame it last took).

outputs
    :meth:`Session.next_frame` (the next framed ``ServerMessage`` to write, or
    ``None``) and :attr:`Session.close` (set once the session must end: a
    :class:`Close` with a WebSocket close code and reason).

Every input takes ``now``: seconds on the server's monotonic clock. Tests
drive it with a fake clock.

Rule map (section of PROTOCOL.md → where it is enforced):

- §4.1 cursor, each snapshot at most once → :meth:`Session._enqueue_snapshot`
- §4.2 runtime then latest snapshot on connect → :meth:`Session.__init__`
- §4.3 pull, waiting → :meth:`Session._request`, :meth:`Session.snapshot_produced`
- §4.4 push streams → :meth:`Session._push_enable`, :meth:`Session._push_disable`
- §4.5 pause buffer → :meth:`Session._hold`, :meth:`Session._evict_held`, :meth:`Session._drain`
- §4.6 queue bound, one notice per run of drops, write timeout →
  :meth:`Session._deliver_push`, :meth:`Session._mark_gap_at_tail`, :meth:`Session.tick`
- §4.6 events go before snapshots (a pushed snapshot that finds no room evicts
  the oldest queued or held event; only when none is left does a snapshot go)
  → :meth:`Session._make_room_for_snapshot`, :meth:`Session._hold`
- §4.6 the notice stands in the place of the first dropped or evicted item of
  its run; a run spans consecutive push items, whatever else is queued among
  them → :meth:`Session._evict_queued`, :meth:`Session._evict_held`
- §4.9 no input costs in the pause buffer's size (amortized O(1) per item held;
  its items bounded by bytes and by count) → :meth:`Session._discard_held`,
  :meth:`Session._evict_for_budget`, :meth:`Session._compact`
- §4.7 configuration → :meth:`Session._apply_config`
- §4.8 errors → :meth:`Session.receive_command`, :meth:`Session.receive_text`
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from libp2p_introspection import config as defaults
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import (
    MAX_COMMAND_SIZE,
    PROTOCOL_VERSION,
    encode_server_message,
)

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source

#: Longest state push interval a session may ask for (one day), ms; larger
#: requests are treated as this before rounding up.
MAX_SESSION_INTERVAL_MS = 86_400_000

#: WebSocket close codes the session uses.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One snapshot of the server-wide sequence (§4.1), encoded once.

    ``number`` counts from 1; ``frame`` is the framed ``ServerMessage{state}``
    whose bytes every session shares.
    """

    number: int
    frame: bytes


class EventItem:
    """One event, encoded once for every session.

    ``frame`` names the event type only; ``full_frame`` carries its property
    types too, for a client that was not told about the type in the
    ``Runtime`` (§3, ``Event.type``; which one a session sends is its rule,
    :meth:`Session._deliver_push`). Built from a ``pb.Event`` with
    :meth:`encode`, ``full_frame`` is encoded the first time a session needs it.
    """

    __slots__ = ("_event", "_full_frame", "frame", "type_name")

    def __init__(self, type_name: str, frame: bytes, full_frame: bytes) -> None:
        self.type_name = type_name
        self.frame = frame
        self._full_frame: bytes | None = full_frame
        self._event: pb.Event | None = None

    @classmethod
    def encode(cls, event: pb.Event) -> EventItem:
        """``event`` (``ts`` ms since epoch, ``type``, ``content``) framed as a
        ``ServerMessage{event}`` naming its type only; with its property types on demand."""
        message = pb.ServerMessage()
        message.event.ts = event.ts
        message.event.content = event.content
        message.event.type.name = event.type.name
        short = encode_server_message(message)
        item = cls(event.type.name, short, short)
        if event.type.property_types:
            item._full_frame, item._event = None, event
        return item

    @property
    def full_frame(self) -> bytes:
        """The event framed with its type's property types (encoded once, when first asked)."""
        if self._full_frame is None:
            assert self._event is not None
            message = pb.ServerMessage()
            message.event.CopyFrom(self._event)
            self._full_frame, self._event = encode_server_message(message), None
        return self._full_frame


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Server options that govern every session (defaults in :mod:`libp2p_introspection.config`).

    ``base_interval_ms`` is the server's snapshot interval, ms;
    ``max_retention_ms`` the upper clamp of ``retention_period_ms``, ms;
    ``push_byte_budget`` the pause buffer's size limit, bytes;
    ``push_item_budget`` its limit in items (events and snapshots), however small;
    ``queue_bound`` the outgoing queue's bound for push data, messages;
    ``write_timeout_s`` how long a client may read nothing, seconds;
    ``max_command_size`` the largest command accepted, bytes;
    ``commands_per_second`` and ``command_burst`` the token bucket that limits
    commands (past it a command gets ``ERR``; a session that keeps sending
    through a burst's worth of refusals is closed with 1008).
    """

    base_interval_ms: int = defaults.DEFAULT_INTERVAL_MS
    max_retention_ms: int = defaults.DEFAULT_MAX_RETENTION_MS
    push_byte_budget: int = defaults.DEFAULT_PUSH_BYTE_BUDGET
    push_item_budget: int = defaults.DEFAULT_PUSH_ITEM_BUDGET
    queue_bound: int = defaults.DEFAULT_QUEUE_BOUND
    write_timeout_s: float = defaults.DEFAULT_WRITE_TIMEOUT_S
    max_command_size: int = MAX_COMMAND_SIZE
    commands_per_second: float = defaults.DEFAULT_COMMANDS_PER_SECOND
    command_burst: int = defaults.DEFAULT_COMMAND_BURST

    def __post_init__(self) -> None:
        if self.base_interval_ms <= 0:
            raise ValueError("base_interval_ms must be positive")
        if self.max_retention_ms < self.base_interval_ms:
            raise ValueError("max_retention_ms must be at least base_interval_ms")
        if (
            self.queue_bound <= 0
            or self.push_byte_budget <= 0
            or self.push_item_budget <= 0
            or self.write_timeout_s <= 0
        ):
            raise ValueError(
                "queue_bound, push_byte_budget, push_item_budget and write_timeout_s "
                "must be positive"
            )
        if self.commands_per_second <= 0 or self.command_burst < 1:
            raise ValueError("commands_per_second must be positive and command_burst at least 1")


@dataclass(frozen=True, slots=True)
class Close:
    """The session must end: close the WebSocket with ``code`` and ``reason``."""

    code: int
    reason: str


#: Kinds of what the outgoing queue holds (§4.6). ``_OTHER`` is outside the
#: push budget and never dropped (responses, the Runtime, pulled snapshots);
#: ``_NOTICE`` marks a gap; ``_EVENT`` and ``_SNAPSHOT`` are push data.
_OTHER, _NOTICE, _EVENT, _SNAPSHOT = range(4)


@dataclass(slots=True)
class _Out:
    """One frame of the outgoing queue: its bytes, kind and (for push data) item."""

    frame: bytes
    kind: int
    item: Snapshot | EventItem | None = None
    full: bool = False  # an event sent with its property types (§3, ``Event.type``)


class _Held:
    """A place in the pause buffer (§4.5), in production order: a push item waiting,
    or (``item`` ``None``) the place of one that left unsent, evicted or discarded.

    ``gap`` marks a run of drops standing here (before the item, if any): it
    becomes a notice when this place reaches the queue, one per run since marks
    that end up side by side become one notice then (§4.6). Places whose item
    left are forgotten as they reach the front, or all at once by a compaction.
    """

    __slots__ = ("gap", "held_at", "item", "size")

    def __init__(self, item: Snapshot | EventItem, size: int, held_at: float) -> None:
        self.item: Snapshot | EventItem | None = item
        self.size = size
        self.held_at = held_at
        self.gap = False


@dataclass(slots=True)
class SessionStats:
    """Counters a server may log or expose; they do not steer the session.

    ``snapshots_sent`` and ``events_sent`` count what was queued and not evicted
    since; ``notices`` the notices queued (one per run of drops).
    """

    commands: int = 0
    errors: int = 0
    rate_limited: int = 0
    snapshots_sent: int = 0
    events_sent: int = 0
    #: Push items dropped or evicted, for any reason.
    dropped: int = 0
    #: Of those, pushed snapshots dropped from a full queue with no event left to
    #: evict, and held snapshots evicted for the byte budget with no event held.
    snapshots_dropped: int = 0
    snapshots_evicted: int = 0
    #: Held items evicted for their age (``retention_period_ms``).
    expired: int = 0
    notices: int = 0


def _notice_frame() -> bytes:
    message = pb.ServerMessage()
    message.notice.kind = pb.ServerNotice.DISCARDING_EVENTS
    return encode_server_message(message)


_NOTICE_FRAME = _notice_frame()

#: Vacant places the pause buffer keeps beyond as many as it holds items, before it
#: compacts them away (so it keeps at most twice as many places as items, plus
#: twice this many).
_VACANT_SLACK = 512


class Session:
    """One client session, from connect to close. See the module docstring.

    ``runtime_frame`` is the framed ``ServerMessage{runtime}``; ``known_event_types``
    the event type names that ``Runtime`` declares; ``latest`` the newest
    snapshot at connect time (§4.2 sends both at once).
    """

    def __init__(
        self,
        limits: SessionLimits,
        runtime_frame: bytes,
        known_event_types: frozenset[str],
        latest: Snapshot,
        now: float,
    ) -> None:
        self.limits = limits
        self.stats = SessionStats()
        self.close: Close | None = None
        self._runtime_frame = runtime_frame
        self._runtime_types = known_event_types
        self._told_types: set[str] = set(known_event_types)
        self._latest = latest
        self._cursor = 0
        self._waiting = False
        self._hello_seen = False
        # Effective configuration (§4.7).
        self._interval_ms = limits.base_interval_ms
        self._retention_ms = limits.max_retention_ms
        # Push streams (§4.4) and pause (§4.5).
        self._push_state = False
        self._push_events = False
        self._paused = False
        # The pause buffer: every place in production order, and the places of held
        # events and held snapshots (oldest first) so that either kind is found, or
        # dropped, without a walk over the other (§4.9: no command costs in the
        # buffer's size). Places whose item left (``vacant``) are compacted away
        # once they outnumber the held items.
        self._held: deque[_Held] = deque()
        self._held_event_places: deque[_Held] = deque()
        self._held_snapshot_places: deque[_Held] = deque()
        self._held_bytes = 0
        self._vacant = 0
        # A run of drops after the last place (its places are gone).
        self._held_tail_gap = False
        # Outgoing queue (§4.6): frames in order; how many are push data, how many events.
        self._outbox: deque[_Out] = deque()
        self._outbox_push = 0
        self._outbox_events = 0
        self._outbox_notices = 0
        self._in_flight = False
        # Whether the adapter has bytes of its own (pings, pongs) waiting for the socket.
        self._adapter_pending = False
        # Whether the last push item or notice taken by the adapter was a notice:
        # a drop right after it belongs to the run that notice already reported.
        self._notice_taken = False
        self._last_progress = now
        self._now = now
        # Command rate limit: a token bucket, and refusals since the last accepted command.
        self._tokens = float(limits.command_burst)
        self._tokens_at = now
        self._refusals = 0

        self._enqueue(runtime_frame)
        self._enqueue_snapshot(latest, push=False)

    # ------------------------------------------------------------------ outputs

    def next_frame(self) -> bytes | None:
        """Take the next frame to write, or ``None`` when there is nothing to send.

        The adapter calls :meth:`frame_sent` once it has written it.
        """
        if not self._outbox or self.close is not None:
            return None
        entry = self._outbox.popleft()
        if entry.kind == _NOTICE:
            self._notice_taken = True
            self._outbox_notices -= 1
        elif entry.kind != _OTHER:
            self._notice_taken = False
            self._outbox_push -= 1
            if entry.kind == _EVENT:
                self._outbox_events -= 1
        self._in_flight = True
        return entry.frame

    @property
    def has_frames(self) -> bool:
        """Whether :meth:`next_frame` would return a frame."""
        return bool(self._outbox) and self.close is None

    # ------------------------------------------------------------------- inputs

    def frame_sent(self, now: float) -> None:
        """The frame last taken with :meth:`next_frame` is written; room may have freed."""
        self._now = now
        self._in_flight = False
        self._last_progress = now
        self._drain()

    def write_progress(self, now: float) -> None:
        """The socket accepted some bytes of what is being written (§4.6: progress, so a
        slow reader of a large frame is not taken for a stuck one)."""
        self._now = now
        self._last_progress = now

    def write_pending(self, pending: bool, now: float) -> None:
        """Whether the adapter has bytes the socket has not taken yet (a WebSocket ping or
        pong, besides the session's frames): the write timeout counts while it has, as
        while a frame is queued or in flight (§4.6), so a client that floods pings and
        reads nothing is closed like one that reads nothing else."""
        self._now = now
        if pending and not self._write_waiting():
            self._last_progress = now  # the write timeout counts from here
        self._adapter_pending = pending

    def _write_waiting(self) -> bool:
        return bool(self._outbox) or self._in_flight or self._adapter_pending

    def end(self, code: int, reason: str) -> None:
        """The adapter ends the session for a reason outside these rules (a dead peer)."""
        if self.close is None:
            self._close(code, reason)

    def tick(self, now: float) -> None:
        """Time passed: age the pause buffer and enforce the write timeout (§4.5, §4.6)."""
        self._now = now
        if self.close is not None:
            return
        self._evict_expired()
        if self._write_waiting() and now - self._last_progress >= self.limits.write_timeout_s:
            self._close(
                CLOSE_POLICY_VIOLATION,
                f"client read nothing for {self.limits.write_timeout_s:g} s",
            )

    def snapshot_produced(self, snapshot: Snapshot, now: float) -> None:
        """The server-wide clock produced ``snapshot`` (§4.1, §4.3, §4.4)."""
        self._now = now
        self._latest = snapshot
        if self.close is not None:
            return
        if self._waiting:
            # A waiting pull and a due state push are satisfied by the same send.
            self._waiting = False
            self._enqueue_snapshot(snapshot, push=False)
            return
        if self._push_state and snapshot.number % self._push_every() == 0:
            self._push(snapshot)

    def event_produced(self, event: EventItem, now: float) -> None:
        """The node emitted ``event``; pushed if this session subscribed to events."""
        self._now = now
        if self.close is None and self._push_events:
            self._push(event)

    def receive_text(self, text: str, now: float) -> None:
        """A text WebSocket message arrived: an ``ERR`` (§4.8); the session goes on."""
        self._now = now
        if self.close is None:
            self.stats.commands += 1
            if not self._within_rate():
                if self.close is None:
                    self._respond(0, self._rate_error())
                return
            self._respond(
                0,
                "text frames are not accepted: send each ClientCommand as a binary message",
            )

    def receive_command(self, data: bytes, now: float) -> None:
        """A binary WebSocket message arrived: one serialized ``ClientCommand`` (§4.3 to §4.8).

        A message above ``max_command_size`` closes the session with 1009; bytes
        that do not parse, a version above 1, an unknown command or source and a
        second ``HELLO`` each get an ``ERR`` response and the session goes on.
        """
        self._now = now
        if self.close is not None:
            return
        self.stats.commands += 1
        if not self._within_rate():
            if self.close is None:
                self._respond(_salvage_id(data), self._rate_error())
            return
        if len(data) > self.limits.max_command_size:
            self._close(
                CLOSE_MESSAGE_TOO_BIG,
                f"command of {len(data)} bytes exceeds the "
                f"{self.limits.max_command_size}-byte limit",
            )
            return
        command = pb.ClientCommand()
        try:
            command.ParseFromString(data)
        except DecodeError as exc:
            self._respond(_salvage_id(data), f"malformed ClientCommand: {exc}")
            return
        version = command.version.version if command.HasField("version") else 0
        if version > PROTOCOL_VERSION:
            self._respond(
                command.id,
                f"unsupported protocol version {version}; this server speaks "
                f"version {PROTOCOL_VERSION}",
            )
            return
        handler = _HANDLERS.get(command.command)
        if handler is None:
            self._respond(command.id, f"unknown command {command.command}")
            return
        handler(self, command)

    def _within_rate(self) -> bool:
        """Charge one command to the token bucket; ``False`` when it is empty (and close
        the session once it has ignored a whole burst of refusals)."""
        limits = self.limits
        elapsed = max(0.0, self._now - self._tokens_at)
        self._tokens = min(
            float(limits.command_burst), self._tokens + elapsed * limits.commands_per_second
        )
        self._tokens_at = self._now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._refusals = 0
            return True
        self.stats.rate_limited += 1
        self._refusals += 1
        if self._refusals > limits.command_burst:
            self._close(CLOSE_POLICY_VIOLATION, "command flood: the client ignored the rate limit")
        return False

    def _rate_error(self) -> str:
        limits = self.limits
        return (
            f"too many commands: at most {limits.commands_per_second:g} per second "
            f"(bursts of {limits.command_burst})"
        )

    # ------------------------------------------------------------ command rules

    def _hello(self, command: pb.ClientCommand) -> None:
        # §4.7: optional, at most once; a config is optional.
        if self._hello_seen:
            self._respond(command.id, "HELLO was already received on this session")
            return
        self._hello_seen = True
        if command.HasField("config"):
            self._apply_config(command.config)
        self._respond(command.id)

    def _update_config(self, command: pb.ClientCommand) -> None:
        if not command.HasField("config"):
            self._respond(command.id, "UPDATE_CONFIG needs a config")
            return
        self._apply_config(command.config)
        self._respond(command.id)

    def _request(self, command: pb.ClientCommand) -> None:
        # §4.3: answered by the data itself, never by OK.
        source = command.source
        if source == Source.STATE:
            if self._latest.number > self._cursor:
                self._enqueue_snapshot(self._latest, push=False)
            else:
                self._waiting = True
        elif source == Source.RUNTIME:
            self._enqueue(self._runtime_frame)
            self._told_types.update(self._runtime_types)
        elif source == Source.EVENTS:
            self._respond(command.id, "EVENTS cannot be requested: events are push-only")
        else:
            self._respond(command.id, f"unknown source {source}")

    def _push_enable(self, command: pb.ClientCommand) -> None:
        if self._set_push(command, True):
            self._respond(command.id)

    def _push_disable(self, command: pb.ClientCommand) -> None:
        if self._set_push(command, False):
            if not self._push_state and not self._push_events:
                # §4.5: disabling every push stream empties the buffer (and ends the pause).
                self._clear_held()
                self._paused = False
            else:
                self._discard_held(Snapshot if command.source == Source.STATE else EventItem)
            self._respond(command.id)

    def _set_push(self, command: pb.ClientCommand, on: bool) -> bool:
        source = command.source
        if source == Source.STATE:
            self._push_state = on
        elif source == Source.EVENTS:
            self._push_events = on
        elif source == Source.RUNTIME:
            self._respond(command.id, "RUNTIME is not a push stream: REQUEST it instead")
            return False
        else:
            self._respond(command.id, f"unknown source {source}")
            return False
        return True

    def _pause(self, command: pb.ClientCommand) -> None:
        # §4.5: pauses all push streams; the source is ignored; idempotent.
        if self._push_state or self._push_events:
            self._paused = True
        self._respond(command.id)

    def _resume(self, command: pb.ClientCommand) -> None:
        # §4.5: OK first, then what was held, in the order it was produced.
        was_paused = self._paused
        self._paused = False
        self._respond(command.id)
        if was_paused:
            self._drain()

    # ----------------------------------------------------------- configuration

    def _apply_config(self, requested: pb.Configuration) -> None:
        # §4.7: 0 means unchanged; the interval rounds up to a multiple of the
        # base interval; retention clamps to [base interval, max retention].
        base = self.limits.base_interval_ms
        if requested.state_snapshot_interval_ms:
            # Integer ceiling (a float would lose precision near 2**64), capped so
            # the effective value always fits the uint64 field it is reported in.
            wanted = min(requested.state_snapshot_interval_ms, MAX_SESSION_INTERVAL_MS)
            self._interval_ms = -(-wanted // base) * base
        if requested.retention_period_ms:
            self._retention_ms = min(
                max(requested.retention_period_ms, base), self.limits.max_retention_ms
            )
            self._evict_expired()

    @property
    def effective_config(self) -> pb.Configuration:
        """The session's configuration as the server applies it (§4.7)."""
        return pb.Configuration(
            retention_period_ms=self._retention_ms,
            state_snapshot_interval_ms=self._interval_ms,
        )

    def _push_every(self) -> int:
        return self._interval_ms // self.limits.base_interval_ms

    # ---------------------------------------------------- outgoing queue (§4.6)

    def _append(self, entry: _Out) -> None:
        if not self._write_waiting():
            self._last_progress = self._now  # the write timeout counts from here
        self._outbox.append(entry)
        if entry.kind == _NOTICE:
            self._outbox_notices += 1
        elif entry.kind != _OTHER:
            self._outbox_push += 1
            if entry.kind == _EVENT:
                self._outbox_events += 1

    def _enqueue(self, frame: bytes) -> None:
        """Queue a frame outside the push budget: a response, the Runtime, a pulled snapshot."""
        self._append(_Out(frame, _OTHER))

    def _enqueue_snapshot(self, snapshot: Snapshot, *, push: bool) -> None:
        # §4.1: every State sent moves the cursor; nothing at or below it is sent.
        if snapshot.number <= self._cursor:
            return
        self._cursor = snapshot.number
        self.stats.snapshots_sent += 1
        self._append(_Out(snapshot.frame, _SNAPSHOT if push else _OTHER, snapshot))

    def _respond(self, command_id: int, error: str | None = None) -> None:
        message = pb.ServerMessage()
        response = message.response
        response.id = command_id
        if error is None:
            response.result = pb.CommandResponse.OK
        else:
            response.result = pb.CommandResponse.ERR
            response.error = error
            self.stats.errors += 1
        response.effective_config.CopyFrom(self.effective_config)
        self._enqueue(encode_server_message(message))

    def _push(self, item: Snapshot | EventItem) -> None:
        if self._paused or self._held or self._held_tail_gap:
            # Paused, or still sending what was held: keep the order of production.
            self._hold(item)
            self._drain()
        else:
            self._deliver_push(item)

    def _deliver_push(self, item: Snapshot | EventItem) -> None:
        """Queue a push item behind everything queued, or drop it (§4.6).

        A snapshot always gets in: if the queue is full, room is made for it. An
        event that does not fit is dropped where it would have stood, at the tail.
        """
        if isinstance(item, Snapshot):
            if item.number <= self._cursor:
                return  # §4.5: a held snapshot at or below the cursor is discarded, never sent
            if self._outbox_push >= self.limits.queue_bound:
                self._make_room_for_snapshot()
            self._enqueue_snapshot(item, push=True)
            return
        if self._outbox_push >= self.limits.queue_bound:
            self.stats.dropped += 1
            self._mark_gap_at_tail()
            return
        self.stats.events_sent += 1
        full = item.type_name not in self._told_types
        if full:
            self._told_types.add(item.type_name)
        self._append(_Out(item.full_frame if full else item.frame, _EVENT, item, full=full))

    def _make_room_for_snapshot(self) -> None:
        # §4.6: events go before snapshots. The oldest queued event is evicted;
        # only when no event is queued is the oldest queued (pushed) snapshot.
        wanted = _EVENT if self._outbox_events else _SNAPSHOT
        index = next(i for i, entry in enumerate(self._outbox) if entry.kind == wanted)
        if wanted == _SNAPSHOT:
            self.stats.snapshots_dropped += 1
        self._evict_queued(index)

    def _evict_queued(self, index: int) -> None:
        """Drop the queued push item at ``index`` where it stands (§4.6).

        Its place becomes the notice of its run of drops, unless it borders a run
        already: then it joins that run, and the run's one notice stands in the
        place of its first item (two runs it joins become one).
        """
        outbox = self._outbox
        entry = outbox[index]
        assert entry.kind in (_EVENT, _SNAPSHOT)
        self.stats.dropped += 1
        self._outbox_push -= 1
        if entry.kind == _EVENT:
            self._outbox_events -= 1
            self.stats.events_sent -= 1
            if entry.full:
                self._pass_on_property_types(index, entry)
        else:
            self.stats.snapshots_sent -= 1
        after = self._next_marked(index)
        gap_after = after is not None and outbox[after].kind == _NOTICE
        if self._gap_before(index):
            del outbox[index]
            if gap_after:
                assert after is not None
                self._remove_notice(after - 1)
        else:
            outbox[index] = _Out(_NOTICE_FRAME, _NOTICE)
            self._outbox_notices += 1
            self.stats.notices += 1
            if gap_after:
                assert after is not None
                self._remove_notice(after)  # the run now starts here
        if after is None:
            self._join_queue_run()

    def _pass_on_property_types(self, index: int, entry: _Out) -> None:
        # The evicted event was to tell the client its type's property types:
        # the next queued event of that type does it instead, else the next one.
        assert isinstance(entry.item, EventItem)
        name = entry.item.type_name
        for later in itertools.islice(self._outbox, index + 1, None):
            item = later.item
            if later.kind == _EVENT and isinstance(item, EventItem) and item.type_name == name:
                later.frame = item.full_frame
                later.full = True
                return
        self._told_types.discard(name)

    def _remove_notice(self, index: int) -> None:
        assert self._outbox[index].kind == _NOTICE
        del self._outbox[index]
        self._outbox_notices -= 1
        self.stats.notices -= 1

    def _gap_before(self, index: int) -> bool:
        """Whether the push item or notice nearest before queue position ``index`` is a
        notice (the last one taken, if none is queued there): a drop at ``index``
        then continues that notice's run. Other frames do not end a run."""
        outbox = self._outbox
        for position in range(index - 1, -1, -1):
            kind = outbox[position].kind
            if kind != _OTHER:
                return kind == _NOTICE
        return self._notice_taken

    def _next_marked(self, index: int) -> int | None:
        """Queue position of the push item or notice nearest after ``index``, if any."""
        for position, entry in enumerate(itertools.islice(self._outbox, index + 1, None)):
            if entry.kind != _OTHER:
                return index + 1 + position
        return None

    def _mark_gap_at_tail(self) -> None:
        # §4.6: one DISCARDING_EVENTS notice per run of consecutive drops, in the
        # place of the first dropped item; the notice is outside the push budget.
        if not self._gap_before(len(self._outbox)):
            self.stats.notices += 1
            self._append(_Out(_NOTICE_FRAME, _NOTICE))

    # ------------------------------------------------------- pause buffer (§4.5)

    def _hold(self, item: Snapshot | EventItem) -> None:
        size = len(item.frame)
        place = _Held(item, size, self._now)
        if self._held_tail_gap:
            self._held_tail_gap, place.gap = False, True  # the run stands before it
        self._held.append(place)
        self._held_bytes += size
        if isinstance(item, Snapshot):
            self._held_snapshot_places.append(place)
        else:
            self._held_event_places.append(place)
        limits = self.limits
        while self.held_count and (
            self._held_bytes > limits.push_byte_budget or self.held_count > limits.push_item_budget
        ):
            self._evict_for_budget()
        self._evict_expired()

    def _evict_for_budget(self) -> None:
        # §4.6 in the pause buffer too: the oldest held event goes first; only
        # when no event is held does the oldest held snapshot.
        if self._held_event_places:
            place = self._held_event_places.popleft()
        else:
            place = self._held_snapshot_places.popleft()
            self.stats.snapshots_evicted += 1
        self._evict_held(place)

    def _evict_expired(self) -> None:
        # §4.5: items older than the retention period go, oldest first. Held in time
        # order: the oldest held item is at the front once vacant places are skipped,
        # and the first young one ends the walk.
        horizon = self._now - self._retention_ms / 1000
        while True:
            self._skip_vacant_front()
            if not self._held:
                return
            place = self._held[0]
            if place.held_at >= horizon:
                return
            self.stats.expired += 1
            self._kind_places(place).popleft()
            self._evict_held(place)

    def _kind_places(self, place: _Held) -> deque[_Held]:
        """The places of ``place``'s kind; ``place`` is their oldest."""
        places = (
            self._held_snapshot_places
            if isinstance(place.item, Snapshot)
            else self._held_event_places
        )
        assert places[0] is place
        return places

    def _evict_held(self, place: _Held) -> None:
        """Evict the held item at ``place`` (already out of its kind's places) where it
        stands: the place becomes the mark of its run of drops, joining a run right
        before it; one right after it joins when they reach the queue."""
        self.stats.dropped += 1
        place.gap = True
        self._vacate(place)
        self._compact_if_sparse()

    def _vacate(self, place: _Held) -> None:
        self._held_bytes -= place.size
        place.item = None
        place.size = 0
        self._vacant += 1

    def _compact_if_sparse(self) -> None:
        if self._vacant > len(self._held) // 2 + _VACANT_SLACK:
            self._compact()

    def _skip_vacant_front(self) -> None:
        """Forget the vacant places at the front; a run marked there moves to the
        first held item (or past the last place)."""
        held = self._held
        gap = False
        while held and held[0].item is None:
            gap |= held.popleft().gap
            self._vacant -= 1
        if gap:
            if held:
                held[0].gap = True
            else:
                self._held_tail_gap = True

    def _compact(self) -> None:
        """Forget every vacant place (each run it marks moves to the next held item):
        linear, but only once vacant places outnumber held items, so amortized O(1)
        per item held."""
        kept: deque[_Held] = deque()
        gap = False
        for place in self._held:
            if place.item is None:
                gap |= place.gap
                continue
            if gap:
                place.gap, gap = True, False
            kept.append(place)
        self._held = kept
        self._vacant = 0
        self._held_tail_gap |= gap

    def _join_queue_run(self) -> None:
        # The queue's tail is a run of drops: the run marked at the front of the pause
        # buffer (nothing held before it) is the same run.
        self._skip_vacant_front()
        if self._held:
            self._held[0].gap = False
        else:
            self._held_tail_gap = False

    def _drain(self) -> None:
        # Move held items to the outgoing queue while not paused and there is room.
        while not self._paused and self.close is None:
            held = self._held
            if not held:
                if self._held_tail_gap:
                    self._held_tail_gap = False
                    self._mark_gap_at_tail()  # evicted items were dropped where they stood
                return
            first = held[0]
            if first.gap:
                first.gap = False
                self._mark_gap_at_tail()  # evicted items were dropped where they stood
            item = first.item
            if item is None:
                held.popleft()
                self._vacant -= 1
                continue
            if isinstance(item, Snapshot) and item.number <= self._cursor:
                self._kind_places(first).popleft()
                held.popleft()
                self._held_bytes -= first.size  # §4.5: discarded, never sent
                continue
            if self._outbox_push >= self.limits.queue_bound:
                return
            self._kind_places(first).popleft()
            held.popleft()
            self._held_bytes -= first.size
            self._deliver_push(item)

    def _discard_held(self, kind: type) -> None:
        # One stream was disabled: its held items go, unreported (nobody wants them);
        # marks that end up side by side, or next to the queue's run, become one
        # notice when they reach the queue. Only that kind's places are visited.
        if kind is Snapshot:
            places, self._held_snapshot_places = self._held_snapshot_places, deque()
        else:
            places, self._held_event_places = self._held_event_places, deque()
        for place in places:
            self._vacate(place)
        self._compact_if_sparse()

    def _clear_held(self) -> None:
        self._held = deque()
        self._held_event_places = deque()
        self._held_snapshot_places = deque()
        self._held_bytes = 0
        self._vacant = 0
        self._held_tail_gap = False

    # --------------------------------------------------------------------- misc

    def _close(self, code: int, reason: str) -> None:
        self.close = Close(code, reason)
        self._outbox.clear()
        self._outbox_push = 0
        self._outbox_events = 0
        self._outbox_notices = 0
        self._clear_held()

    # Read-only views for adapters, logs and tests.

    @property
    def cursor(self) -> int:
        """Number of the last snapshot sent to this session (§4.1)."""
        return self._cursor

    @property
    def waiting(self) -> bool:
        """Whether a ready signal is waiting for the next snapshot (§4.3)."""
        return self._waiting

    @property
    def paused(self) -> bool:
        """Whether the session's push streams are paused (§4.5)."""
        return self._paused

    @property
    def held_bytes(self) -> int:
        """Bytes in the pause buffer (§4.5)."""
        return self._held_bytes

    @property
    def held_count(self) -> int:
        """Items in the pause buffer (§4.5)."""
        return len(self._held_event_places) + len(self._held_snapshot_places)

    @property
    def held_events(self) -> int:
        """Events in the pause buffer (§4.5)."""
        return len(self._held_event_places)

    @property
    def held_places(self) -> int:
        """Places the pause buffer keeps: its items, and the places of items that left
        (at most as many as the items, plus 1,024: vacant places are compacted away)."""
        return len(self._held)

    @property
    def queued(self) -> int:
        """Frames in the outgoing queue, push data or not (§4.6)."""
        return len(self._outbox)

    @property
    def queued_replies(self) -> int:
        """Frames in the outgoing queue that the client's commands caused (responses, the
        Runtime, pulled snapshots): what a server may hold the client's reading back by.
        Push data and notices are bounded on their own (§4.6)."""
        return len(self._outbox) - self._outbox_push - self._outbox_notices

    @property
    def queued_push(self) -> int:
        """Push items (events and pushed snapshots) in the outgoing queue (§4.6)."""
        return self._outbox_push

    @property
    def queued_events(self) -> int:
        """Events in the outgoing queue (§4.6)."""
        return self._outbox_events


_HANDLERS: dict[int, Callable[[Session, pb.ClientCommand], None]] = {
    Command.HELLO: Session._hello,
    Command.REQUEST: Session._request,
    Command.PUSH_ENABLE: Session._push_enable,
    Command.PUSH_DISABLE: Session._push_disable,
    Command.PUSH_PAUSE: Session._pause,
    Command.PUSH_RESUME: Session._resume,
    Command.UPDATE_CONFIG: Session._update_config,
}


def _salvage_id(data: bytes) -> int:
    """Read ``ClientCommand.id`` (field 2, varint) from bytes that failed to parse.

    Walks the wire format up to the first fault; returns 0 if the id cannot be read.
    """
    pos = 0
    end = len(data)

    def varint() -> int | None:
        nonlocal pos
        value = shift = 0
        while pos < end and shift < 64:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        return None

    while pos < end:
        tag = varint()
        if tag is None:
            return 0
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value = varint()
            if value is None:
                return 0
            if field == 2:
                return value & 0xFFFFFFFFFFFFFFFF
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length = varint()
            if length is None:
                return 0
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            return 0
    return 0
