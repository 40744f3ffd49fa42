"""The server side of one client session, as a pure state machine (PROTOCOL.md §4).

Every rule of PROTOCOL.md §4 that governs one session (what it is sent, held,
dropped, answered or closed for) lives in this module, and no other module
decides one; the module holds no sockets, no clocks, no tasks. The rules of §4
that are not one session's live where the rule map below names them: the
server-wide snapshot sequence and its encoding (§4.1, §4.3: the hub and the
sampled source's clock), how the transport carries out a close (§4.6: the
WebSocket adapter and wire), isolation between sessions (§4.9: the session
tasks) and the replay source (§4.10). The I/O adapter
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

Rule map: every rule of PROTOCOL.md §4, one line each, as rule → function →
test (``test_session.py`` in tests/protocol unless a path is given; ``e2e`` is
tests/server/test_server_e2e.py). Functions are this module's unless named
(``server.…``, ``abc.…``: another module's). tests/protocol/test_session_rule_map.py
checks that every function and test named exists and that every sentence of §4
is claimed by a row of its subsection.

=====  ==============================================  =============================================  ==============================================================================================================
§      rule                                            function                                       test
=====  ==============================================  =============================================  ==============================================================================================================
4.1    numbered 1, 2, 3, … on one clock, one at start  server.hub.Hub.publish_snapshot,               tests/server/test_hub.py::test_snapshots_are_numbered_one_by_one_from_one
                                                       abc.SampledSource.run
4.1    encoded once, bytes shared by every session     server.hub.Hub.publish_snapshot                tests/server/test_hub.py::test_one_snapshot_is_shared_by_every_session_byte_for_byte
4.1    each snapshot at most once, cursor only rises   Session._unsent, _enqueue_snapshot             test_each_snapshot_reaches_a_client_at_most_once_and_instant_ts_rises
4.1    state push every k-th snapshot (k rounded up)   Session.snapshot_produced, _push_every         test_state_push_follows_session_interval_multiple
4.2    Runtime, then the latest snapshot, on connect   Session.__init__                               test_connect_sends_runtime_then_latest_snapshot
4.3    nothing is sent unasked                         Session.__init__, snapshot_produced            test_no_snapshot_is_sent_unasked
4.3    ready: newest above the cursor at once          Session._request                               test_ready_with_newer_snapshot_sends_newest_at_once
4.3    ready with none newer: waiting, then the next   Session._request, snapshot_produced            test_ready_without_newer_snapshot_waits_for_the_next
4.3    ready while waiting changes nothing             Session._request                               test_ready_while_waiting_changes_nothing
4.3    REQUEST RUNTIME at once, never an OK            Session._request                               test_request_runtime_sends_runtime_at_once
4.3    a Runtime that grew: sent from then on          Session.runtime_changed,                       test_a_runtime_that_grew_is_sent_on_request_and_new_types_still_come_with_their_properties
                                                       server.hub.Hub.publish_runtime
4.3    REQUEST EVENTS is an ERR                        Session._request                               test_request_events_is_an_error
4.3    pull works with push on or paused               Session._request, _enqueue_snapshot            test_pull_works_while_push_is_paused
4.4    PUSH_ENABLE/DISABLE idempotent, OK              Session._push_enable, _push_disable            test_push_enable_and_disable_are_idempotent_and_ok
4.4    PUSH_* RUNTIME is an ERR                        Session._set_push                              test_push_runtime_is_an_error
4.4    events only to subscribers                      Session.event_produced                         test_events_are_sent_only_to_subscribers
4.4    the first event of an undeclared type carries   Session._deliver_push,                         test_event_of_a_type_not_in_runtime_carries_property_types_once
                                                       _pass_on_property_types,
                                                       EventItem.encode
       its property types (§3 Event.type)
4.4    state push and waiting pull: one send           Session.snapshot_produced                      test_state_push_and_waiting_pull_are_satisfied_by_one_send
4.5    pause all; resume: OK, then held in order       Session._pause, _resume, _drain                test_pause_holds_and_resume_sends_ok_then_held_in_order
4.5    pause/resume/disable changing nothing: OK       Session._pause, _resume, _push_disable         test_pause_resume_variants_that_change_nothing_are_ok
4.5    held items age out (retention)                  Session._evict_expired                         test_pause_buffer_is_bounded_by_retention_age
4.5    held bytes bounded, oldest first                Session._hold, _evict_for_budget               test_pause_buffer_is_bounded_by_byte_budget_oldest_first
4.5    held items bounded in count                     Session._hold, _evict_for_budget               test_session_cost.py::test_the_pause_buffer_holds_at_most_its_item_budget
4.5    pull while paused; held at or below dropped     Session._drain, _unsent                        test_pull_while_paused_moves_cursor_and_held_snapshots_below_it_are_discarded
4.5    disabling every push stream empties buffer      Session._push_disable                          test_disabling_every_push_stream_empties_the_buffer
4.6    push data over the queue bound is dropped       Session._deliver_push                          test_queue_bound_drops_push_data_with_one_notice_per_run
4.6    responses, Runtime, pulls always get through    Session._enqueue                               test_responses_runtime_and_pulls_get_through_a_full_queue
4.6    a pushed snapshot evicts the oldest event       Session._make_room_for_snapshot                test_a_pushed_snapshot_evicts_the_oldest_queued_event_from_a_full_queue
4.6    no event queued: oldest snapshot dropped        Session._make_room_for_snapshot                test_with_no_event_queued_the_oldest_queued_snapshot_is_dropped_instead
4.6    in the pause buffer, events go first            Session._evict_for_budget                      test_in_the_pause_buffer_events_are_evicted_before_an_older_snapshot
4.6    one notice per run, where its first item was    Session._evict_queued, _evict_held,            test_the_notice_stands_in_the_place_of_an_event_evicted_from_the_middle
                                                       _mark_gap_at_tail, _drain
4.6    a run spans push items, joins its neighbours    Session._evict_queued, _gap_before             test_an_eviction_between_two_runs_makes_them_one_run_with_one_notice
4.6    backpressure: reading waits on the replies      Session.accepts_input,                         test_input_is_held_back_while_replies_exceed_the_queue_bound
                                                       server.session_io.SessionHandle.wait_readable
4.6    reads nothing for the write timeout: 1008       Session.tick, write_pending                    test_client_that_reads_nothing_is_closed_after_write_timeout
4.6    bytes the socket accepts are progress           Session.write_progress                         test_a_slow_but_reading_client_is_not_closed
4.6    frame in flight, then 1008; close grace         server.websocket.WebSocketTransport.close      tests/server/test_close_grace.py::test_a_stuck_client_that_resumes_reads_whole_frames_then_1008_and_the_reason
4.6    protocol violation: close frame, then TCP       server.wire.ServerWire.close                   tests/server/test_websocket_protocol.py::test_a_protocol_violation_gets_its_close_frame_then_the_tcp_close
4.7    HELLO without config: OK, effective config      Session._hello                                 test_hello_without_config_is_ok_with_effective_config
4.7    a field that is 0 or absent: unchanged          Session._apply_config                          test_a_config_field_of_0_or_absent_leaves_it_unchanged
4.7    interval rounded up, retention clamped          Session._apply_config                          test_config_is_rounded_and_clamped
4.7    UPDATE_CONFIG without config is an ERR          Session._update_config                         test_update_config_without_config_is_an_error
4.8    second HELLO: ERR, the session goes on          Session._hello                                 test_second_hello_is_an_error_and_session_goes_on
4.8    unknown command or source: ERR                  Session.receive_command, _request              test_unknown_command_and_source_are_errors
4.8    version above 1: ERR                            Session.receive_command                        test_version_above_supported_is_an_error_zero_and_absent_mean_one
4.8    unparseable bytes: ERR with the id if read      Session.receive_command, _salvage_id           test_unparseable_bytes_are_an_error_with_id_where_readable
4.8    a text frame: ERR                               Session.receive_text                           test_text_frame_is_an_error
4.8    a command over the size limit: 1009             Session._too_big, receive_command,             test_command_over_size_limit_closes_with_1009;
                                                       receive_oversized
       (or in too many frames: 1009 too)               Session.receive_oversized                      test_a_message_in_too_many_frames_closes_with_the_sessions_1009
                                                                                                      e2e::test_an_oversized_command_is_closed_by_the_session_with_its_1009
4.8    one response per command but a good REQUEST     Session._respond                               test_every_command_but_successful_request_gets_exactly_one_response
4.9    no command costs in the pause buffer's size     _PauseBuffer, Session._discard_held            test_session_cost.py::test_toggling_one_push_stream_costs_the_same_whatever_the_buffer_holds
4.9    a stuck session never delays another            server.session_io.serve_session                e2e::test_client_that_stops_reading_does_not_starve_another
4.9    the node waits a bounded fan-out per pass       server.session_io.PassBudget                   tests/server/test_fanout_node_delay.py::test_the_node_waits_for_a_bounded_fan_out_per_pass_however_many_subscribe
4.10   replay: pacing, file order, byte-identical      server.sources.replay.ReplaySource.run         tests/sources/test_replay.py::test_pacing_order_and_bytes
4.10   replay: the base interval from the recording    server.sources.replay.ReplaySource             tests/sources/test_replay.py::test_the_base_interval_comes_from_the_recording
4.10   replay: loops shift time so it keeps rising     server.sources.replay.ReplaySource.run         tests/sources/test_replay.py::test_loop_shifts_time_so_it_keeps_rising
4.10   replay: a pass lasts max(span, base interval)   server.sources.replay.ReplaySource             tests/sources/test_replay.py::test_a_loop_pass_of_one_instant_lasts_the_base_interval_at_any_speed
4.10   replay: max retention raised to the interval    server.config.ServerConfig.for_source          tests/sources/test_replay.py::test_max_retention_is_raised_to_the_base_interval_and_logged
4.10   replay: past 2^64 - 1 the loop ends, logged     server.sources.replay.ReplaySource.run,        tests/sources/test_replay.py::test_timestamps_near_2_64_end_the_loop_with_a_reason;
                                                       _stop_looping                                  tests/sources/test_replay.py::test_a_nested_timestamp_that_would_overflow_ends_the_loop
=====  ==============================================  =============================================  ==============================================================================================================
"""  # noqa: E501 (the rule table: one line per rule)

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.closecodes import CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY_VIOLATION
from libp2p_introspection.protocol.framing import (
    PROTOCOL_VERSION,
    encode_server_message,
)
from libp2p_introspection.protocol.limits import SessionLimits
from libp2p_introspection.protocol.protowire import VARINT, WireError, iter_fields

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source

#: Longest state push interval a session may ask for (one day), ms; larger
#: requests are treated as this before rounding up.
MAX_SESSION_INTERVAL_MS = 86_400_000



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


class _Outbox:
    """The outgoing queue (§4.6): frames in order, with how many are push data, events and
    notices kept here and nowhere else (every change goes through these methods).

    It also keeps the session's ``stats`` of what was queued and not evicted since
    (``snapshots_sent``, ``events_sent``, ``notices``): an entry counts there when it
    enters the queue and stops counting when it is evicted (:meth:`replace`,
    :meth:`remove`); one taken to be sent (:meth:`popleft`) or cleared by a close stays
    counted.
    """

    __slots__ = ("_entries", "events", "notices", "push", "stats")

    def __init__(self, stats: SessionStats) -> None:
        self._entries: deque[_Out] = deque()
        self.push = 0  # events and pushed snapshots
        self.events = 0
        self.notices = 0
        self.stats = stats

    def _count(self, entry: _Out, sign: int) -> None:
        kind = entry.kind
        if kind == _NOTICE:
            self.notices += sign
        elif kind != _OTHER:
            self.push += sign
            if kind == _EVENT:
                self.events += sign

    def _tally(self, entry: _Out, sign: int) -> None:
        kind, stats = entry.kind, self.stats
        if kind == _NOTICE:
            stats.notices += sign
        elif kind == _EVENT:
            stats.events_sent += sign
        elif kind == _SNAPSHOT or isinstance(entry.item, Snapshot):  # pushed or pulled
            stats.snapshots_sent += sign

    def append(self, entry: _Out) -> None:
        self._entries.append(entry)
        self._count(entry, 1)
        self._tally(entry, 1)

    def popleft(self) -> _Out:
        entry = self._entries.popleft()
        self._count(entry, -1)
        return entry

    def replace(self, index: int, entry: _Out) -> None:
        """Put ``entry`` in the place of the one at ``index``, which is evicted."""
        old = self._entries[index]
        self._count(old, -1)
        self._tally(old, -1)
        self._entries[index] = entry
        self._count(entry, 1)
        self._tally(entry, 1)

    def remove(self, index: int) -> None:
        """Evict the entry at ``index``."""
        old = self._entries[index]
        self._count(old, -1)
        self._tally(old, -1)
        del self._entries[index]

    def clear(self) -> None:
        self._entries.clear()
        self.push = self.events = self.notices = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> _Out:
        return self._entries[index]

    def __iter__(self) -> Iterator[_Out]:
        return iter(self._entries)

    def after(self, index: int) -> Iterator[_Out]:
        """The entries after position ``index``, in order."""
        return itertools.islice(self._entries, index + 1, None)


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


class _PauseBuffer:
    """The pause buffer's places (§4.5) and its bookkeeping, kept here and nowhere else:
    every place in production order, the places of held events and of held snapshots
    (oldest first, so that either kind is found or dropped without a walk over the
    other: §4.9), the bytes and items held, the vacant places (whose item left; they
    are compacted away once they outnumber the items), and a run of drops marked after
    the last place (``tail_gap``). Which item goes, and when, is the session's rule.
    """

    __slots__ = ("bytes", "event_places", "places", "snapshot_places", "tail_gap", "vacant")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget everything held (and every mark)."""
        self.places: deque[_Held] = deque()
        self.event_places: deque[_Held] = deque()
        self.snapshot_places: deque[_Held] = deque()
        self.bytes = 0
        self.vacant = 0
        self.tail_gap = False

    @property
    def count(self) -> int:
        """Items held."""
        return len(self.event_places) + len(self.snapshot_places)

    def __bool__(self) -> bool:
        """Whether anything is held or marked (a push must then queue behind it)."""
        return bool(self.places) or self.tail_gap

    def add(self, item: Snapshot | EventItem, now: float) -> None:
        """Hold ``item`` at the end, at time ``now``; a run marked after the last place
        stands before it."""
        place = _Held(item, len(item.frame), now)
        if self.tail_gap:
            self.tail_gap, place.gap = False, True
        self.places.append(place)
        self.bytes += place.size
        if isinstance(item, Snapshot):
            self.snapshot_places.append(place)
        else:
            self.event_places.append(place)

    def kind_places(self, place: _Held) -> deque[_Held]:
        """The places of ``place``'s kind; ``place`` is their oldest."""
        places = self.snapshot_places if isinstance(place.item, Snapshot) else self.event_places
        assert places[0] is place
        return places

    def take_front(self) -> _Held:
        """Remove the first place (its item, if any, leaves the buffer) and return it."""
        place = self.places[0]
        if place.item is None:
            self.vacant -= 1
        else:
            self.kind_places(place).popleft()
            self.bytes -= place.size
        return self.places.popleft()

    def vacate(self, place: _Held) -> None:
        """The item at ``place`` (already out of its kind's places) leaves; the place stays."""
        self.bytes -= place.size
        place.item = None
        place.size = 0
        self.vacant += 1

    def discard(self, *, snapshots: bool) -> None:
        """Every held snapshot (or every held event) leaves, unmarked."""
        if snapshots:
            places, self.snapshot_places = self.snapshot_places, deque()
        else:
            places, self.event_places = self.event_places, deque()
        for place in places:
            self.vacate(place)
        self.compact_if_sparse()

    def compact_if_sparse(self) -> None:
        if self.vacant > len(self.places) // 2 + _VACANT_SLACK:
            self.compact()

    def skip_vacant_front(self) -> None:
        """Forget the vacant places at the front; a run marked there moves to the
        first held item (or past the last place)."""
        places = self.places
        gap = False
        while places and places[0].item is None:
            gap |= places.popleft().gap
            self.vacant -= 1
        if gap:
            if places:
                places[0].gap = True
            else:
                self.tail_gap = True

    def compact(self) -> None:
        """Forget every vacant place (each run it marks moves to the next held item):
        linear, but only once vacant places outnumber held items, so amortized O(1)
        per item held."""
        kept: deque[_Held] = deque()
        gap = False
        for place in self.places:
            if place.item is None:
                gap |= place.gap
                continue
            if gap:
                place.gap, gap = True, False
            kept.append(place)
        self.places = kept
        self.vacant = 0
        self.tail_gap |= gap


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
        # The pause buffer (§4.5, §4.9: no command costs in its size).
        self._buffer = _PauseBuffer()
        # Outgoing queue (§4.6): frames in order; how many are push data, how many events.
        self._outbox = _Outbox(self.stats)
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
        if entry.kind != _OTHER:
            self._notice_taken = entry.kind == _NOTICE
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

    def runtime_changed(self, runtime_frame: bytes, known_event_types: frozenset[str]) -> None:
        """The source's ``Runtime`` grew (new event types): a later ``REQUEST RUNTIME``
        sends ``runtime_frame``, which declares ``known_event_types``. Nothing is sent
        now; what the client was told stands, so a type new to it still comes with
        its property types in its first event (§3 ``Event.type``)."""
        self._runtime_frame = runtime_frame
        self._runtime_types = known_event_types

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
            self._too_big(f"command of {len(data)} bytes")
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

    def receive_oversized(self, size: int, now: float, *, max_frames: int | None = None) -> None:
        """The transport stopped receiving a message past ``max_command_size`` (``size``
        bytes of it arrived; the rest was never buffered, nor will anything more be
        read), or past ``max_frames`` frames (given when that was the limit hit): the
        session closes with 1009 (§4.8), as for a whole one.

        The adapter configures its transport's message limit with
        ``limits.max_command_size``, so that this, not the transport, decides the close.
        """
        self._now = now
        if self.close is None:
            self.stats.commands += 1
            if max_frames is not None and size <= self.limits.max_command_size:
                self._close(
                    CLOSE_MESSAGE_TOO_BIG,
                    f"command in more than {max_frames} frames exceeds the "
                    f"{max_frames}-frame limit per message",
                )
                return
            self._too_big(f"command of at least {size} bytes")

    def _too_big(self, what: str) -> None:
        # §4.8: a command over the size limit closes the session with 1009.
        self._close(
            CLOSE_MESSAGE_TOO_BIG, f"{what} exceeds the {self.limits.max_command_size}-byte limit"
        )

    @property
    def accepts_input(self) -> bool:
        """Whether the adapter should read the client's next message now (§4.6
        backpressure): not while the replies its commands caused (responses, the Runtime,
        pulled snapshots, never dropped) are more than ``queue_bound``; a client that
        sends commands without reading the answers is then pushed back by TCP. Push
        data is bounded on its own and never holds the reading back."""
        return self.queued_replies <= self.limits.queue_bound

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
            if self._unsent(self._latest):
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
                self._buffer.clear()
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

    def _enqueue(self, frame: bytes) -> None:
        """Queue a frame outside the push budget: a response, the Runtime, a pulled snapshot."""
        self._append(_Out(frame, _OTHER))

    def _unsent(self, snapshot: Snapshot) -> bool:
        """§4.1, the one check of the cursor: whether ``snapshot`` is above it (a session
        is never sent a snapshot at or below its cursor)."""
        return snapshot.number > self._cursor

    def _enqueue_snapshot(self, snapshot: Snapshot, *, push: bool) -> None:
        # §4.1: every State sent moves the cursor; nothing at or below it is sent.
        if not self._unsent(snapshot):
            return
        self._cursor = snapshot.number
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
        if self._paused or self._buffer:
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
            if not self._unsent(item):
                return  # §4.5: a held snapshot at or below the cursor is discarded, never sent
            if self._outbox.push >= self.limits.queue_bound:
                self._make_room_for_snapshot()
            self._enqueue_snapshot(item, push=True)
            return
        if self._outbox.push >= self.limits.queue_bound:
            self.stats.dropped += 1
            self._mark_gap_at_tail()
            return
        full = item.type_name not in self._told_types
        if full:
            self._told_types.add(item.type_name)
        self._append(_Out(item.full_frame if full else item.frame, _EVENT, item, full=full))

    def _make_room_for_snapshot(self) -> None:
        # §4.6: events go before snapshots. The oldest queued event is evicted;
        # only when no event is queued is the oldest queued (pushed) snapshot.
        wanted = _EVENT if self._outbox.events else _SNAPSHOT
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
        if entry.kind == _EVENT and entry.full:
            self._pass_on_property_types(index, entry)
        after = self._next_marked(index)
        gap_after = after is not None and outbox[after].kind == _NOTICE
        if self._gap_before(index):
            outbox.remove(index)
            if gap_after:
                assert after is not None
                self._remove_notice(after - 1)
        else:
            outbox.replace(index, _Out(_NOTICE_FRAME, _NOTICE))
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
        for later in self._outbox.after(index):
            item = later.item
            if later.kind == _EVENT and isinstance(item, EventItem) and item.type_name == name:
                later.frame = item.full_frame
                later.full = True
                return
        self._told_types.discard(name)

    def _remove_notice(self, index: int) -> None:
        assert self._outbox[index].kind == _NOTICE
        self._outbox.remove(index)

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
        for position, entry in enumerate(self._outbox.after(index)):
            if entry.kind != _OTHER:
                return index + 1 + position
        return None

    def _mark_gap_at_tail(self) -> None:
        # §4.6: one DISCARDING_EVENTS notice per run of consecutive drops, in the
        # place of the first dropped item; the notice is outside the push budget.
        if not self._gap_before(len(self._outbox)):
            self._append(_Out(_NOTICE_FRAME, _NOTICE))

    # ------------------------------------------------------- pause buffer (§4.5)

    def _hold(self, item: Snapshot | EventItem) -> None:
        buffer = self._buffer
        buffer.add(item, self._now)
        limits = self.limits
        while buffer.count and (
            buffer.bytes > limits.push_byte_budget or buffer.count > limits.push_item_budget
        ):
            self._evict_for_budget()
        self._evict_expired()

    def _evict_for_budget(self) -> None:
        # §4.6 in the pause buffer too: the oldest held event goes first; only
        # when no event is held does the oldest held snapshot.
        buffer = self._buffer
        if buffer.event_places:
            place = buffer.event_places.popleft()
        else:
            place = buffer.snapshot_places.popleft()
            self.stats.snapshots_evicted += 1
        self._evict_held(place)

    def _evict_expired(self) -> None:
        # §4.5: items older than the retention period go, oldest first. Held in time
        # order: the oldest held item is at the front once vacant places are skipped,
        # and the first young one ends the walk.
        buffer = self._buffer
        horizon = self._now - self._retention_ms / 1000
        while True:
            buffer.skip_vacant_front()
            if not buffer.places:
                return
            place = buffer.places[0]
            if place.held_at >= horizon:
                return
            self.stats.expired += 1
            buffer.kind_places(place).popleft()
            self._evict_held(place)

    def _evict_held(self, place: _Held) -> None:
        """Evict the held item at ``place`` (already out of its kind's places) where it
        stands: the place becomes the mark of its run of drops, joining a run right
        before it; one right after it joins when they reach the queue."""
        self.stats.dropped += 1
        place.gap = True
        self._buffer.vacate(place)
        self._buffer.compact_if_sparse()

    def _join_queue_run(self) -> None:
        # The queue's tail is a run of drops: the run marked at the front of the pause
        # buffer (nothing held before it) is the same run.
        buffer = self._buffer
        buffer.skip_vacant_front()
        if buffer.places:
            buffer.places[0].gap = False
        else:
            buffer.tail_gap = False

    def _drain(self) -> None:
        # Move held items to the outgoing queue while not paused and there is room.
        buffer = self._buffer
        while not self._paused and self.close is None:
            if not buffer.places:
                if buffer.tail_gap:
                    buffer.tail_gap = False
                    self._mark_gap_at_tail()  # evicted items were dropped where they stood
                return
            first = buffer.places[0]
            if first.gap:
                first.gap = False
                self._mark_gap_at_tail()  # evicted items were dropped where they stood
            item = first.item
            if item is None:
                buffer.take_front()
                continue
            if isinstance(item, Snapshot) and not self._unsent(item):
                buffer.take_front()  # §4.5: discarded, never sent
                continue
            if self._outbox.push >= self.limits.queue_bound:
                return
            buffer.take_front()
            self._deliver_push(item)

    def _discard_held(self, kind: type) -> None:
        # One stream was disabled: its held items go, unreported (nobody wants them);
        # marks that end up side by side, or next to the queue's run, become one
        # notice when they reach the queue. Only that kind's places are visited.
        self._buffer.discard(snapshots=kind is Snapshot)

    # --------------------------------------------------------------------- misc

    def _close(self, code: int, reason: str) -> None:
        self.close = Close(code, reason)
        self._outbox.clear()
        self._buffer.clear()

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
        return self._buffer.bytes

    @property
    def held_count(self) -> int:
        """Items in the pause buffer (§4.5)."""
        return self._buffer.count

    @property
    def held_events(self) -> int:
        """Events in the pause buffer (§4.5)."""
        return len(self._buffer.event_places)

    @property
    def held_places(self) -> int:
        """Places the pause buffer keeps: its items, and the places of items that left
        (at most as many as the items, plus 1,024: vacant places are compacted away)."""
        return len(self._buffer.places)

    @property
    def queued(self) -> int:
        """Frames in the outgoing queue, push data or not (§4.6)."""
        return len(self._outbox)

    @property
    def queued_replies(self) -> int:
        """Frames in the outgoing queue that the client's commands caused (responses, the
        Runtime, pulled snapshots): what a server may hold the client's reading back by.
        Push data and notices are bounded on their own (§4.6)."""
        return len(self._outbox) - self._outbox.push - self._outbox.notices

    @property
    def queued_push(self) -> int:
        """Push items (events and pushed snapshots) in the outgoing queue (§4.6)."""
        return self._outbox.push

    @property
    def queued_events(self) -> int:
        """Events in the outgoing queue (§4.6)."""
        return self._outbox.events


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

    Walks the wire format (:func:`~libp2p_introspection.protocol.protowire.iter_fields`) up
    to the first fault; returns 0 if the id cannot be read.
    """
    try:
        for number, wire_type, value, _, _ in iter_fields(data):
            if number == 2 and wire_type == VARINT:
                return value & 0xFFFFFFFFFFFFFFFF
    except WireError:
        pass
    return 0
