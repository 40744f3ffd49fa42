"""Every rule of PROTOCOL.md §4 against the session state machine: no sockets, fake clock."""

from __future__ import annotations

import itertools

import pytest
from session_harness import (
    Command,
    Harness,
    Source,
    event_seqs,
    kinds,
    make_event,
    make_snapshot,
    snapshot_numbers,
)

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.closecodes import CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY_VIOLATION
from libp2p_introspection.protocol.framing import encode_server_message
from libp2p_introspection.protocol.session import SessionLimits

OK = pb.CommandResponse.OK
ERR = pb.CommandResponse.ERR


def connected(**limits) -> Harness:
    """A session past its connect burst (runtime + snapshot 1)."""
    h = Harness(SessionLimits(**limits))
    assert kinds(h.read()) == ["runtime", "state"]
    return h


# §4.2 -----------------------------------------------------------------------


def test_connect_sends_runtime_then_latest_snapshot():
    h = Harness()
    messages = h.read()
    assert kinds(messages) == ["runtime", "state"]
    assert messages[0].runtime.implementation == "py-libp2p"
    assert snapshot_numbers(messages) == [1]
    assert h.session.cursor == 1
    assert all(m.version.version == 1 for m in messages)


# §4.1 / §4.3 pull -------------------------------------------------------------


def test_no_snapshot_is_sent_unasked():
    h = connected()
    h.produce(5)
    assert h.read() == []


def test_ready_with_newer_snapshot_sends_newest_at_once():
    h = connected()
    h.produce(3)  # snapshots 2, 3, 4 exist
    h.send(Command.REQUEST, Source.STATE, cid=7)
    messages = h.read()
    assert kinds(messages) == ["state"]  # the data itself, never an OK response
    assert snapshot_numbers(messages) == [4]
    assert h.session.cursor == 4


def test_ready_without_newer_snapshot_waits_for_the_next():
    h = connected()
    h.send(Command.REQUEST, Source.STATE)
    assert h.read() == []
    assert h.session.waiting
    h.produce()
    assert snapshot_numbers(h.read()) == [2]
    assert not h.session.waiting
    h.produce()
    assert h.read() == []  # one ready signal, one snapshot


def test_ready_while_waiting_changes_nothing():
    h = connected()
    for _ in range(5):
        h.send(Command.REQUEST, Source.STATE)
    assert h.read() == []
    h.produce(3)
    assert snapshot_numbers(h.read()) == [2]


def test_each_snapshot_reaches_a_client_at_most_once_and_instant_ts_rises():
    h = connected()
    seen: list[int] = [1]
    for step in range(30):
        if step % 3:
            h.produce()
        h.send(Command.REQUEST, Source.STATE)
        seen += snapshot_numbers(h.read())
    assert seen == sorted(set(seen))


def test_request_runtime_sends_runtime_at_once():
    h = connected()
    h.send(Command.REQUEST, Source.RUNTIME, cid=3)
    assert kinds(h.read()) == ["runtime"]


def test_request_events_is_an_error():
    h = connected()
    h.send(Command.REQUEST, Source.EVENTS, cid=9)
    (message,) = h.read()
    assert message.response.id == 9
    assert message.response.result == ERR
    assert "push-only" in message.response.error


def test_pull_works_while_push_is_paused():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.produce()
    h.send(Command.REQUEST, Source.STATE)
    assert snapshot_numbers(h.read()) == [2]


# §4.4 push streams -------------------------------------------------------------


def test_push_enable_and_disable_are_idempotent_and_ok():
    h = connected()
    for cid, cmd, src in [
        (1, Command.PUSH_ENABLE, Source.EVENTS),
        (2, Command.PUSH_ENABLE, Source.EVENTS),
        (3, Command.PUSH_DISABLE, Source.EVENTS),
        (4, Command.PUSH_DISABLE, Source.EVENTS),
        (5, Command.PUSH_ENABLE, Source.STATE),
        (6, Command.PUSH_ENABLE, Source.STATE),
    ]:
        h.send(cmd, src, cid=cid)
        (message,) = h.read()
        assert (message.response.id, message.response.result) == (cid, OK)


def test_push_runtime_is_an_error():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.RUNTIME, cid=1)
    h.send(Command.PUSH_DISABLE, Source.RUNTIME, cid=2)
    responses = [m.response for m in h.read()]
    assert [(r.id, r.result) for r in responses] == [(1, ERR), (2, ERR)]


def test_state_push_sends_every_snapshot_at_base_interval():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce(4)
    assert snapshot_numbers(h.read()) == [2, 3, 4, 5]


def test_state_push_follows_session_interval_multiple():
    h = connected()
    config = pb.Configuration(state_snapshot_interval_ms=2_500)  # rounds up to 3 000
    h.send(Command.UPDATE_CONFIG, cid=1, config=config)
    (response,) = h.read()
    assert response.response.effective_config.state_snapshot_interval_ms == 3_000
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce(9)  # snapshots 2..10
    assert snapshot_numbers(h.read()) == [3, 6, 9]


def test_state_push_and_waiting_pull_are_satisfied_by_one_send():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.REQUEST, Source.STATE)
    h.read()
    h.produce()
    assert snapshot_numbers(h.read()) == [2]
    assert not h.session.waiting


def test_push_disable_stops_pushes():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.emit()
    h.produce()
    assert kinds(h.read()) == ["event", "state"]
    h.send(Command.PUSH_DISABLE, Source.EVENTS)
    h.send(Command.PUSH_DISABLE, Source.STATE)
    h.read()
    h.emit()
    h.produce()
    assert h.read() == []


def test_events_are_sent_only_to_subscribers():
    h = connected()
    h.emit()
    assert h.read() == []


def test_event_of_a_type_not_in_runtime_carries_property_types_once():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.read()
    h.emit("Known")
    h.emit("Surprise")
    h.emit("Surprise")
    messages = h.read()
    assert [len(m.event.type.property_types) for m in messages] == [0, 1, 0]
    assert [m.event.type.name for m in messages] == ["Known", "Surprise", "Surprise"]


def test_a_runtime_that_grew_is_sent_on_request_and_new_types_still_come_with_their_properties():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.read()
    grown = pb.ServerMessage()
    grown.runtime.peer_id = "QmTest"
    grown.runtime.event_types.add(name="Known")
    grown.runtime.event_types.add(name="AppDeclared")
    h.session.runtime_changed(encode_server_message(grown), frozenset({"Known", "AppDeclared"}))
    assert h.read() == []  # nothing is sent unasked
    # Told nothing of the new type yet: its first event carries its property types.
    h.emit("AppDeclared")
    h.emit("AppDeclared")
    assert [len(m.event.type.property_types) for m in h.read()] == [1, 0]
    h.send(Command.REQUEST, Source.RUNTIME)
    (message,) = h.read()
    assert [t.name for t in message.runtime.event_types] == ["Known", "AppDeclared"]


# §4.5 pause / resume ------------------------------------------------------------


def test_pause_holds_and_resume_sends_ok_then_held_in_order():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE, Source.EVENTS, cid=5)  # source ignored: pauses both
    h.read()
    h.emit()
    h.produce()
    h.emit()
    assert h.read() == []
    assert h.session.held_count == 3
    h.send(Command.PUSH_RESUME, cid=6)
    messages = h.read()
    assert kinds(messages) == ["response", "event", "state", "event"]
    assert messages[0].response.id == 6
    assert event_seqs(messages) == [1, 2]


def test_pause_resume_variants_that_change_nothing_are_ok():
    h = connected()
    # no push stream on: pause, resume, disable change nothing
    for cid, cmd in enumerate([Command.PUSH_PAUSE, Command.PUSH_RESUME, Command.PUSH_DISABLE], 1):
        h.send(cmd, cid=cid)
        (message,) = h.read()
        assert (message.response.id, message.response.result) == (cid, OK)
    assert not h.session.paused
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_RESUME, cid=10)  # resume while running
    h.send(Command.PUSH_PAUSE, cid=11)
    h.send(Command.PUSH_PAUSE, cid=12)  # pause while paused
    responses = [m.response for m in h.read()]
    assert all(r.result == OK for r in responses)
    assert h.session.paused
    h.emit()
    h.send(Command.PUSH_RESUME)
    assert kinds(h.read()) == ["response", "event"]


def test_pause_buffer_is_bounded_by_retention_age():
    h = connected()
    h.send(Command.UPDATE_CONFIG, config=pb.Configuration(retention_period_ms=5_000))
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.emit()
    h.advance(3)
    h.emit()
    h.advance(3)  # the first event is now 6 s old, past the 5 s retention
    assert h.session.held_count == 1
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "notice", "event"]
    assert event_seqs(messages) == [2]


def test_pause_buffer_is_bounded_by_byte_budget_oldest_first():
    event_size = len(make_event("Known", 1, padding=1_000).frame)
    h = connected(push_byte_budget=event_size * 3 + 8)  # seq 10 is a byte longer
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_PAUSE)
    h.read()
    for _ in range(10):
        h.emit(padding=1_000)
    assert h.session.held_bytes <= event_size * 3 + 8
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "notice", "event", "event", "event"]
    assert event_seqs(messages) == [8, 9, 10]
    assert h.session.stats.dropped == 7


def test_pull_while_paused_moves_cursor_and_held_snapshots_below_it_are_discarded():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.produce(3)  # 2, 3, 4 held
    h.send(Command.REQUEST, Source.STATE)
    assert snapshot_numbers(h.read()) == [4]  # pulled at once while paused
    h.produce()  # 5 held
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "state"]
    assert snapshot_numbers(messages) == [5]  # 2..4 were at or below the cursor


def test_disabling_every_push_stream_empties_the_buffer():
    h = connected()
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.emit()
    h.produce()
    h.send(Command.PUSH_DISABLE, Source.EVENTS)
    assert h.session.held_count == 1  # the held snapshot stays while STATE is on
    h.send(Command.PUSH_DISABLE, Source.STATE)
    assert h.session.held_count == 0
    h.send(Command.PUSH_RESUME)
    assert kinds(h.read()) == ["response"] * 3  # disable, disable, resume: nothing held


# §4.6 dropping and notices ----------------------------------------------------


def test_queue_bound_drops_push_data_with_one_notice_per_run():
    h = connected(queue_bound=4)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.read()
    for _ in range(10):  # the client reads nothing meanwhile
        h.emit()
    messages = h.read()
    assert kinds(messages) == ["event"] * 4 + ["notice"]
    assert event_seqs(messages) == [1, 2, 3, 4]
    for _ in range(3):
        h.emit()  # room again: the run of drops is over
    for _ in range(6):
        h.emit()
    messages = h.read()
    assert kinds(messages) == ["event"] * 4 + ["notice"]
    assert event_seqs(messages) == [11, 12, 13, 14]


def test_responses_runtime_and_pulls_get_through_a_full_queue():
    h = connected(queue_bound=2)
    h.send(Command.PUSH_ENABLE, Source.EVENTS, cid=1)
    for _ in range(5):
        h.emit()
    h.produce()
    h.send(Command.REQUEST, Source.STATE)
    h.send(Command.REQUEST, Source.RUNTIME)
    h.send(Command.PUSH_PAUSE, cid=2)
    messages = h.read()
    assert kinds(messages) == [
        "response",
        "event",
        "event",
        "notice",
        "state",
        "runtime",
        "response",
    ]


def test_held_data_drains_as_the_client_reads_without_loss():
    h = connected(queue_bound=3)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_PAUSE)
    h.read()
    for _ in range(20):
        h.emit()
    h.send(Command.PUSH_RESUME)
    h.emit()  # produced after the resume: behind what was held
    messages = h.read()
    assert "notice" not in kinds(messages)
    assert event_seqs(messages) == list(range(1, 22))


# §4.6 events go before snapshots; a notice stands where its run begins ---------------


def test_a_pushed_snapshot_evicts_the_oldest_queued_event_from_a_full_queue():
    h = connected(queue_bound=4)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    for _ in range(4):
        h.emit()  # the queue is full of events; the client reads nothing meanwhile
    h.produce()
    messages = h.read()
    # The notice stands where event 1 stood: the gap is at the front, not the tail.
    assert kinds(messages) == ["notice", "event", "event", "event", "state"]
    assert event_seqs(messages) == [2, 3, 4]
    assert snapshot_numbers(messages) == [2]
    assert h.session.stats.snapshots_dropped == 0


def test_with_no_event_queued_the_oldest_queued_snapshot_is_dropped_instead():
    h = connected(queue_bound=3)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce(5)  # 2, 3, 4 fill the queue; 5 then 6 each push out the oldest
    messages = h.read()
    assert kinds(messages) == ["notice", "state", "state", "state"]  # one run: 2 and 3
    assert snapshot_numbers(messages) == [4, 5, 6]
    assert h.session.stats.snapshots_dropped == 2
    assert h.session.stats.notices == 1


def test_a_state_push_subscriber_gets_every_snapshot_however_fast_events_come():
    h = connected(queue_bound=8)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    received = []
    for _ in range(20):  # twenty intervals of 500 events each, read slowly
        for _ in range(500):
            h.emit()
        h.produce()
        received += h.read(limit=3)
    received += h.read()
    assert snapshot_numbers(received) == list(range(2, 22))
    seqs = event_seqs(received)
    assert seqs == sorted(seqs) and len(seqs) < 10_000
    sequence = kinds(received)
    assert ("notice", "notice") not in itertools.pairwise(sequence)


def test_the_notice_stands_in_the_place_of_an_event_evicted_from_the_middle():
    """§4.6: "delivered in the place of the first dropped (or evicted) item"."""
    h = connected(queue_bound=3)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce()  # snapshot 2
    h.emit()  # event 1
    h.produce()  # snapshot 3: the queue is full
    h.produce()  # snapshot 4 evicts event 1, between snapshots 2 and 3
    messages = h.read()
    assert kinds(messages) == ["state", "notice", "state", "state"]
    assert snapshot_numbers(messages) == [2, 3, 4]


def test_an_eviction_next_to_a_run_joins_it_and_the_notice_moves_to_where_the_run_begins():
    h = connected(queue_bound=3)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce(2)  # snapshots 2 and 3
    h.emit()  # event 1: the queue is full
    h.send(Command.HELLO, cid=9)  # a response, outside the push budget
    h.emit()  # event 2 is dropped: a notice behind the response
    h.produce()  # snapshot 4 evicts event 1: the run is now events 1 and 2
    messages = h.read()
    # One notice, in the place of event 1 (the run's first item), before the
    # response that was queued between event 1 and event 2.
    assert kinds(messages) == ["state", "state", "notice", "response", "state"]
    assert snapshot_numbers(messages) == [2, 3, 4]
    assert messages[3].response.id == 9
    assert h.session.stats.notices == 1


def test_an_eviction_between_two_runs_makes_them_one_run_with_one_notice():
    h = connected(queue_bound=3)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce()  # snapshot 2
    h.emit()  # event 1
    h.emit()  # event 2: the queue is full
    h.emit()  # event 3 is dropped: notice at the tail
    h.produce()  # snapshot 3 evicts event 1: a second run, between 2 and event 2
    h.produce()  # snapshot 4 evicts event 2: events 1 to 3 are now one run
    messages = h.read()
    assert kinds(messages) == ["state", "notice", "state", "state"]
    assert snapshot_numbers(messages) == [2, 3, 4]
    assert h.session.stats.notices == 1


def test_a_drop_right_after_a_notice_already_sent_needs_no_second_notice():
    h = connected(queue_bound=1)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.produce(2)  # 3 pushes out 2
    assert kinds(h.read(limit=1)) == ["notice"]  # the client takes the notice only
    h.produce()  # 4 pushes out 3: the same run, nothing was delivered since
    messages = h.read()
    assert kinds(messages) == ["state"]
    assert snapshot_numbers(messages) == [4]


def test_an_evicted_event_that_carried_its_property_types_hands_them_on():
    h = connected(queue_bound=2)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.read()
    h.emit("Surprise")  # carries the property types of a type the Runtime lacks
    h.emit("Surprise")
    h.produce()  # evicts the first
    messages = h.read()
    assert kinds(messages) == ["notice", "event", "state"]
    assert event_seqs(messages) == [2]
    assert len(messages[1].event.type.property_types) == 1  # told by the survivor
    h.emit("Other")
    h.produce()
    h.produce()  # evicts it, and no later "Other" is queued to tell the client
    h.read()
    h.emit("Other")
    (message,) = h.read()
    assert message.event.type.name == "Other"
    assert len(message.event.type.property_types) == 1


def test_in_the_pause_buffer_events_are_evicted_before_an_older_snapshot():
    event_size = len(make_event("Known", 1, padding=1_000).frame)
    h = connected(push_byte_budget=event_size * 3 + 100)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.produce()  # snapshot 2, held first: the oldest item
    for _ in range(5):
        h.emit(padding=1_000)
    assert h.session.held_bytes <= event_size * 3 + 100
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "state", "notice", "event", "event", "event"]
    assert snapshot_numbers(messages) == [2]
    assert event_seqs(messages) == [3, 4, 5]  # 1 and 2 went, where they stood
    assert h.session.stats.snapshots_evicted == 0


def test_in_the_pause_buffer_a_snapshot_that_finds_no_room_evicts_held_events():
    event_size = len(make_event("Known", 1, padding=1_000).frame)
    h = connected(push_byte_budget=event_size * 3 + 10)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    for _ in range(3):
        h.emit(padding=1_000)  # the budget is full of events
    h.produce()  # snapshot 2 evicts event 1
    h.emit()  # a small event: it fits
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "notice", "event", "event", "state", "event"]
    assert event_seqs(messages) == [2, 3, 4]
    assert snapshot_numbers(messages) == [2]


def test_a_held_event_evicted_from_the_middle_leaves_its_notice_in_its_place():
    event_size = len(make_event("Known", 1, padding=1_000).frame)
    h = connected(push_byte_budget=event_size * 2 + 200)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.produce()  # snapshot 2
    h.emit(padding=1_000)  # event 1
    h.produce()  # snapshot 3
    h.emit(padding=1_000)  # event 2
    h.emit(padding=1_000)  # event 3: over budget, event 1 goes
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "state", "notice", "state", "event", "event"]
    assert snapshot_numbers(messages) == [2, 3]
    assert event_seqs(messages) == [2, 3]


def test_an_expired_snapshot_next_to_evicted_events_joins_their_run():
    event_size = len(make_event("Known", 1, padding=1_000).frame)
    h = connected(push_byte_budget=event_size * 3 + 100)
    h.send(Command.UPDATE_CONFIG, config=pb.Configuration(retention_period_ms=5_000))
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.produce()  # snapshot 2
    h.advance(3)
    for _ in range(4):
        h.emit(padding=1_000)  # event 1 goes for the budget; snapshot 2 stays
    h.advance(3)  # snapshot 2 is now past the retention, the events are not
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "notice", "event", "event", "event"]
    assert event_seqs(messages) == [2, 3, 4]
    assert h.session.stats.expired == 1

def test_with_no_event_held_the_oldest_held_snapshots_are_evicted():
    snapshot_size = len(make_snapshot(2).frame)
    h = connected(push_byte_budget=snapshot_size * 2)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE)
    h.read()
    h.produce(4)  # 2, 3, 4, 5: room for two
    h.send(Command.PUSH_RESUME)
    messages = h.read()
    assert kinds(messages) == ["response", "notice", "state", "state"]
    assert snapshot_numbers(messages) == [4, 5]
    assert h.session.stats.snapshots_evicted == 2


def test_queued_replies_count_what_commands_caused_not_push_data_or_notices():
    """What a server may hold a client's reading back by (it must keep reading the
    commands of a client flooded with events, §4.6)."""
    h = connected(queue_bound=4)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.read()
    for _ in range(4):
        h.emit()
    for _ in range(10):  # a reader at half the rate of the flood: runs of one drop
        h.read(limit=1)
        h.emit()
        h.emit()
    assert h.session.queued_push == 4
    assert h.session.queued > 6  # the notices among the events
    assert h.session.queued_replies == 0
    h.send(Command.HELLO)
    h.send(Command.REQUEST, Source.RUNTIME)
    assert h.session.queued_replies == 2

def test_client_that_reads_nothing_is_closed_after_write_timeout():
    h = connected(write_timeout_s=10)
    h.send(Command.REQUEST, Source.RUNTIME)
    h.advance(9.9)
    assert h.session.close is None
    h.advance(0.2)
    assert h.session.close is not None
    assert h.session.close.code == CLOSE_POLICY_VIOLATION
    assert "read nothing" in h.session.close.reason


def test_idle_client_with_nothing_to_read_is_not_closed():
    h = connected(write_timeout_s=10)
    h.advance(3600)
    assert h.session.close is None


def test_a_slow_but_reading_client_is_not_closed():
    h = connected(write_timeout_s=10)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    for _ in range(20):
        h.emit()
        h.advance(5)
        h.read(limit=1)
    assert h.session.close is None


# §4.7 configuration -------------------------------------------------------------


def test_hello_without_config_is_ok_with_effective_config():
    h = connected(base_interval_ms=500, max_retention_ms=60_000)
    h.send(Command.HELLO, cid=42)
    (message,) = h.read()
    assert message.response.id == 42
    assert message.response.result == OK
    assert message.response.error == ""
    config = message.response.effective_config
    assert (config.state_snapshot_interval_ms, config.retention_period_ms) == (500, 60_000)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ((0, 0), (120_000, 1_000)),  # zero means unchanged
        ((30_000, 1_000), (30_000, 1_000)),
        ((10, 1), (1_000, 1_000)),  # retention clamps up to the base interval, interval rounds up
        ((10**9, 1_001), (120_000, 2_000)),  # retention clamps down to the max
    ],
)
def test_config_is_rounded_and_clamped(requested, expected):
    h = connected()
    retention, interval = requested
    config = pb.Configuration(retention_period_ms=retention, state_snapshot_interval_ms=interval)
    h.send(Command.HELLO, cid=1, config=config)
    (message,) = h.read()
    effective = message.response.effective_config
    assert (effective.retention_period_ms, effective.state_snapshot_interval_ms) == expected


def test_a_config_field_of_0_or_absent_leaves_it_unchanged():
    """§4.7: "A field that is 0 or absent means unchanged"."""
    h = connected()
    h.send(Command.HELLO, cid=1, config=pb.Configuration(
        retention_period_ms=30_000, state_snapshot_interval_ms=3_000))  # fmt: skip
    h.read()
    for cid, config in enumerate([
        pb.Configuration(retention_period_ms=0, state_snapshot_interval_ms=0),
        pb.Configuration(),  # both absent
        pb.Configuration(state_snapshot_interval_ms=5_000),  # retention absent
    ], start=2):  # fmt: skip
        h.send(Command.UPDATE_CONFIG, cid=cid, config=config)
        (message,) = h.read()
        assert (message.response.id, message.response.result) == (cid, OK)
        effective = message.response.effective_config
        assert effective.retention_period_ms == 30_000
    assert effective.state_snapshot_interval_ms == 5_000


def test_update_config_without_config_is_an_error():
    h = connected()
    h.send(Command.UPDATE_CONFIG, cid=4)
    (message,) = h.read()
    assert (message.response.id, message.response.result) == (4, ERR)


# §4.8 errors --------------------------------------------------------------------


def test_second_hello_is_an_error_and_session_goes_on():
    h = connected()
    h.send(Command.HELLO, cid=1)
    h.send(Command.HELLO, cid=2)
    responses = [m.response for m in h.read()]
    assert [(r.id, r.result) for r in responses] == [(1, OK), (2, ERR)]
    assert "HELLO" in responses[1].error
    h.send(Command.REQUEST, Source.RUNTIME)
    assert kinds(h.read()) == ["runtime"]


def test_unknown_command_and_source_are_errors():
    h = connected()
    h.send(6, cid=11)  # 6 is not a command
    h.send(99, cid=12)
    h.send(Command.REQUEST, 7, cid=13)
    h.send(Command.PUSH_ENABLE, 7, cid=14)
    responses = [m.response for m in h.read()]
    assert [(r.id, r.result) for r in responses] == [(11, ERR), (12, ERR), (13, ERR), (14, ERR)]
    assert "unknown command 6" in responses[0].error
    assert "unknown source 7" in responses[2].error


def test_version_above_supported_is_an_error_zero_and_absent_mean_one():
    h = connected()
    for cid, version in [(1, 2), (2, 0), (3, None), (4, 1)]:
        message = pb.ClientCommand(id=cid, command=Command.HELLO if cid == 2 else 99)
        if version is not None:
            message.version.version = version
        h.session.receive_command(message.SerializeToString(), h.now)
    responses = [m.response for m in h.read()]
    assert responses[0].result == ERR and "version 2" in responses[0].error
    assert responses[1].result == OK  # HELLO with an empty Version is version 1
    assert "unknown command" in responses[2].error  # parsed as version 1
    assert "unknown command" in responses[3].error


def test_unparseable_bytes_are_an_error_with_id_where_readable():
    h = connected()
    h.session.receive_command(b"\xff\xff\xff", h.now)
    # id 77 is readable before a truncated length-delimited field
    h.session.receive_command(b"\x10\x4d\x2a\x09abc", h.now)
    responses = [m.response for m in h.read()]
    assert [(r.id, r.result) for r in responses] == [(0, ERR), (77, ERR)]
    assert "malformed" in responses[0].error


def test_text_frame_is_an_error():
    h = connected()
    h.session.receive_text("REQUEST STATE", h.now)
    (message,) = h.read()
    assert message.response.result == ERR
    assert "binary" in message.response.error


def test_a_message_the_transport_stopped_reading_closes_with_the_sessions_1009():
    # The transport keeps an oversized command from being buffered; the session decides.
    h = connected(max_command_size=100)
    h.session.receive_oversized(101, h.now)
    assert h.session.close is not None
    assert h.session.close.code == CLOSE_MESSAGE_TOO_BIG
    assert "exceeds the 100-byte limit" in h.session.close.reason
    assert h.session.stats.commands == 1
    assert h.read() == []


def test_a_message_in_too_many_frames_closes_with_the_sessions_1009():
    # The transport stops a message of endless (empty) continuation frames; the session
    # closes it as too big to process, naming the frame limit (not a byte count).
    h = connected(max_command_size=100)
    h.session.receive_oversized(0, h.now, max_frames=64)
    assert h.session.close is not None
    assert h.session.close.code == CLOSE_MESSAGE_TOO_BIG
    assert "more than 64 frames" in h.session.close.reason
    assert h.session.stats.commands == 1
    assert h.read() == []


def test_input_is_held_back_while_replies_exceed_the_queue_bound():
    # §4.6 backpressure: the adapter asks the session whether to read the next message.
    h = connected(queue_bound=2)
    for cid in range(3):
        assert h.session.accepts_input
        h.send(Command.REQUEST, Source.RUNTIME, cid=cid)
    assert h.session.queued_replies == 3
    assert not h.session.accepts_input
    h.read(1)
    assert h.session.accepts_input


def test_command_over_size_limit_closes_with_1009():
    h = connected(max_command_size=100)
    h.session.receive_command(b"\x00" * 101, h.now)
    assert h.session.close is not None
    assert h.session.close.code == CLOSE_MESSAGE_TOO_BIG
    assert h.read() == []


def test_every_command_but_successful_request_gets_exactly_one_response():
    h = connected()
    sent = [
        (Command.HELLO, Source.STATE),
        (Command.PUSH_ENABLE, Source.EVENTS),
        (Command.PUSH_PAUSE, Source.STATE),
        (Command.PUSH_RESUME, Source.STATE),
        (Command.PUSH_DISABLE, Source.EVENTS),
        (Command.UPDATE_CONFIG, Source.STATE),
        (Command.REQUEST, Source.EVENTS),
        (Command.REQUEST, Source.STATE),  # success: answered by data only
        (Command.REQUEST, Source.RUNTIME),  # success: answered by data only
        (Command.HELLO, Source.STATE),
    ]
    for cid, (cmd, src) in enumerate(sent, 100):
        h.send(cmd, src, cid=cid)
    responses = [m.response.id for m in h.read() if m.WhichOneof("payload") == "response"]
    assert responses == [100, 101, 102, 103, 104, 105, 106, 109]


def test_observer_toolkit_handshake():
    """HELLO, wait for OK, then REQUEST RUNTIME, PUSH_ENABLE EVENTS and STATE at once."""
    h = Harness()
    assert kinds(h.read()) == ["runtime", "state"]
    h.send(Command.HELLO, cid=1)
    (hello,) = h.read()
    assert hello.response.id == 1 and hello.response.error == ""
    assert hello.response.effective_config.retention_period_ms > 0
    h.send(Command.REQUEST, Source.RUNTIME, cid=2)
    h.send(Command.PUSH_ENABLE, Source.EVENTS, cid=3)
    h.send(Command.PUSH_ENABLE, Source.STATE, cid=4)
    assert kinds(h.read()) == ["runtime", "response", "response"]
    h.emit()
    h.produce()
    assert kinds(h.read()) == ["event", "state"]


# Rate limit (hardening) ---------------------------------------------------------


def test_commands_past_the_rate_get_err_and_a_persistent_flood_is_closed():
    h = connected(commands_per_second=10, command_burst=5)
    for cid in range(1, 8):
        h.send(Command.PUSH_PAUSE, cid=cid)
    responses = [m.response for m in h.read()]
    assert [(r.id, r.result) for r in responses[:5]] == [(i, OK) for i in range(1, 6)]
    assert [(r.id, r.result) for r in responses[5:]] == [(6, ERR), (7, ERR)]
    assert "too many commands" in responses[5].error
    h.advance(0.5)  # 5 tokens back at 10 per second
    h.send(Command.PUSH_PAUSE, cid=20)
    assert h.read()[0].response.result == OK
    for _ in range(20):  # ignore the refusals: closed with 1008
        h.send(Command.PUSH_PAUSE)
    assert h.session.close is not None and h.session.close.code == CLOSE_POLICY_VIOLATION
    assert "flood" in h.session.close.reason


@pytest.mark.parametrize("interval", [2**64 - 1, 2**64 - 500, 10**15])
def test_absurd_intervals_are_capped_not_fatal(interval):
    h = connected()
    h.send(Command.UPDATE_CONFIG, cid=3, config=pb.Configuration(state_snapshot_interval_ms=interval))
    (message,) = h.read()
    assert (message.response.id, message.response.result) == (3, OK)
    assert message.response.effective_config.state_snapshot_interval_ms == 86_400_000
