"""What a command costs a session does not grow with its pause buffer (§4.9).

A paused client with a full buffer must not be able to buy O(buffer) work per
command within the rate limit (the snapshot clock and every other session wait
while a session works). The work is counted, not timed: lines of
``protocol/session.py`` executed, with a trace function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from session_harness import Command, Harness, Source, make_event, snapshot_numbers

from libp2p_introspection.protocol import session as session_module
from libp2p_introspection.protocol.session import SessionLimits

SESSION_FILE = session_module.__file__
HELD = 200_000
#: Lines of session.py one command may run whatever the buffer holds (a command's
#: parse, rate limit, rule and response take a few dozen), plus this many per item
#: it removes from the buffer (each was held once: amortized O(1) per item).
PER_COMMAND = 400
PER_ITEM = 20


class TooMuchWork(Exception):
    pass


class LineCounter:
    """Counts lines executed in session.py while installed; raises past ``limit``."""

    def __init__(self) -> None:
        self.lines = 0
        self.limit = sys.maxsize

    def _local(self, frame, event, arg):
        if event == "line":
            self.lines += 1
            if self.lines > self.limit:
                raise TooMuchWork(f"more than {self.limit} lines of session.py")
        return self._local

    def _global(self, frame, event, arg):
        return self._local if frame.f_code.co_filename == SESSION_FILE else None

    def run(self, action: Callable[[], None], limit: int = sys.maxsize) -> int:
        """Lines ``action`` ran in session.py (``TooMuchWork`` past ``limit``)."""
        self.lines, self.limit = 0, limit
        sys.settrace(self._global)
        try:
            action()
        finally:
            sys.settrace(None)
        return self.lines


def _full_paused_session() -> Harness:
    limits = SessionLimits(
        push_byte_budget=1 << 30,
        push_item_budget=HELD + 10_000,
        max_retention_ms=10**9,
        commands_per_second=1e9,
        command_burst=10**9,
    )
    h = Harness(limits)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE, Source.STATE)
    h.read()
    event = make_event("Known", 0)
    for n in range(HELD):
        if n % 1000 == 0:
            h.produce()  # a held snapshot now and then, among the events
        h.session.event_produced(event, h.now)
    assert h.session.held_count == HELD + HELD // 1000
    return h


@pytest.fixture(scope="module")
def counter() -> LineCounter:
    return LineCounter()


def test_toggling_one_push_stream_costs_the_same_whatever_the_buffer_holds(counter):
    h = _full_paused_session()
    session = h.session
    for toggle in range(10_000):
        for cmd in (Command.PUSH_DISABLE, Command.PUSH_ENABLE):
            snapshots = session.held_count - session.held_events  # what a disable drops
            limit = PER_COMMAND + PER_ITEM * snapshots
            counter.run(lambda cmd=cmd: h.send(cmd, Source.STATE), limit)
        if toggle % 100 == 0:
            h.produce()  # a snapshot to hold, and to discard at the next disable
    assert session.held_events == HELD  # the events stayed, in the buffer
    # Disabling events visits the events once, each of which was held once: the
    # work over many toggles is linear in what was held, not in toggles times buffer.
    total = 0
    for _ in range(100):
        for cmd in (Command.PUSH_DISABLE, Command.PUSH_ENABLE):
            total += counter.run(lambda cmd=cmd: h.send(cmd, Source.EVENTS))
        for seq in range(10):
            total += counter.run(
                lambda seq=seq: h.session.event_produced(make_event("Known", seq), h.now)
            )
    assert total < 20 * (HELD + 100 * (2 + 10))
    assert session.held_places <= 2 * session.held_count + 2 * session_module._VACANT_SLACK
    # And the rules still hold: on resume, what is still held comes out in order.
    h.send(Command.PUSH_RESUME, Source.STATE)
    messages = h.read()
    events = [m for m in messages if m.WhichOneof("payload") == "event"]
    assert len(events) == 10  # the ten emitted since events were last enabled
    assert [m.event.ts for m in events] == [1_700_000_000_000 + seq for seq in range(10)]


def test_the_pause_buffer_holds_at_most_its_item_budget():
    limits = SessionLimits(push_item_budget=1_000, push_byte_budget=1 << 30,
                           max_retention_ms=10**9)  # fmt: skip
    h = Harness(limits)
    h.send(Command.PUSH_ENABLE, Source.EVENTS)
    h.send(Command.PUSH_ENABLE, Source.STATE)
    h.send(Command.PUSH_PAUSE, Source.STATE)
    h.read()
    for _ in range(5_000):
        h.emit()
        assert h.session.held_count <= 1_000
        assert h.session.held_places <= 2 * 1_000 + 2 * session_module._VACANT_SLACK
    h.produce(1_010)  # snapshots evict the held events first (§4.6), then the oldest of them
    assert h.session.held_count == 1_000 and h.session.held_events == 0
    assert h.session.stats.dropped == 5_000 + 1_010 - 1_000
    assert h.session.stats.snapshots_evicted == 10
    h.send(Command.PUSH_RESUME, Source.STATE)
    messages = h.read()
    kinds = [m.WhichOneof("payload") for m in messages]
    # One run of drops (the oldest), one notice in its place, then the rest in order.
    assert kinds[:2] == ["response", "notice"] and kinds.count("notice") == 1
    assert kinds[2:] == ["state"] * 1_000
    assert snapshot_numbers(messages) == list(range(h.number - 999, h.number + 1))
