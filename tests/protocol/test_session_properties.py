"""Property tests: random sequences of commands, snapshot ticks, events, reads and clock
steps against the session state machine keep its invariants:

- no snapshot is sent twice and ``instant_ts`` only rises;
- none is sent unasked (each is pushed while state push was on, or answers a ready signal);
- the pause buffer stays within its byte budget;
- every command but a successful ``REQUEST`` gets exactly one response (§4.3, §4.8);
- a run of drops is reported by one notice: never two without a push item (state or
  event) between them, whatever responses come between;
- events go before snapshots (§4.6): a pushed snapshot is dropped from the queue only
  when no event is queued, and evicted from the pause buffer for its byte budget only
  when no event is held.

A second property drives push streams only (no pulls, which may overtake what is
held) and checks, from the frames alone, that what is sent keeps the order of
production and that every gap in it is marked by exactly one notice, in its place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st
from session_harness import Command, Source, command, make_event, make_snapshot

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol import session as session_module
from libp2p_introspection.protocol.framing import encode_server_message, parse_server_message
from libp2p_introspection.protocol.session import Session, SessionLimits

LIMITS = SessionLimits(
    base_interval_ms=1_000,
    max_retention_ms=10_000,
    push_byte_budget=1_500,
    queue_bound=3,
    write_timeout_s=1e9,  # the timeout has its own tests; here it would end the run
    commands_per_second=1e9,
    command_burst=10**9,
)

# Each step: (operation, argument). Operations are drawn uniformly, so the
# interleavings that matter (enable, pause, produce, pull, resume, read) come up
# often; arguments are drawn per operation.
OPERATIONS = ["pull", "runtime", "pause", "resume", "read_all", "enable_state", "enable_events",
              "disable_state", "disable_events", "produce", "emit", "emit_new", "tick", "read",
              "configure", "invalid"]  # fmt: skip
ARGUMENTS = {
    "produce": st.integers(1, 3),
    "emit": st.sampled_from([0, 300, 900]),
    "emit_new": st.sampled_from([0, 300, 900]),
    "tick": st.integers(0, 15_000),
    "read": st.integers(1, 20),
    "configure": st.tuples(st.integers(0, 5_000), st.integers(0, 20_000)),
    "invalid": st.sampled_from([(6, 0), (2, 9), (2, 1), (1, 2), (0, 0), (7, 0)]),
}
STEPS = st.sampled_from(OPERATIONS).flatmap(
    lambda op: st.tuples(st.just(op), ARGUMENTS.get(op, st.just(0)))
)


@contextmanager
def events_go_first(session: Session) -> Iterator[None]:
    """Around one input: a snapshot lost for room (§4.6) leaves no event where it was."""
    dropped, evicted = session.stats.snapshots_dropped, session.stats.snapshots_evicted
    yield
    if session.stats.snapshots_dropped > dropped:
        assert session.queued_events == 0, "a queued snapshot was dropped before an event"
    if session.stats.snapshots_evicted > evicted:
        assert session.held_events == 0, "a held snapshot was evicted before an event"


class Model:
    def __init__(self) -> None:
        runtime = pb.ServerMessage()
        runtime.runtime.implementation = "model"
        self.now = 0.0
        self.number = 1
        self.next_id = 1
        self.session = Session(LIMITS, encode_server_message(runtime), frozenset({"Known"}),
                               make_snapshot(1), self.now)  # fmt: skip
        self.seen: list[int] = []
        self.ready_signals = 1  # the connect burst counts as one
        self.eligible: set[int] = set()
        self.push_state_on = False
        self.expected: dict[int, int] = {}
        self.responses: dict[int, int] = {}
        self.previous = ""
        self.seq = 0

    def command(self, cmd, source, config=None, expected=1) -> None:
        cid = self.next_id
        self.next_id += 1
        self.expected[cid] = expected
        self.session.receive_command(command(cmd, source, cid, config=config), self.now)

    def step(self, op, arg) -> None:
        if op == "pull":
            self.ready_signals += 1
            self.command(Command.REQUEST, Source.STATE, expected=0)
        elif op == "runtime":
            self.command(Command.REQUEST, Source.RUNTIME, expected=0)
        elif op == "pause":
            self.command(Command.PUSH_PAUSE, Source.STATE)
        elif op == "resume":
            self.command(Command.PUSH_RESUME, Source.EVENTS)
        elif op.startswith("enable_"):
            source = Source.STATE if op == "enable_state" else Source.EVENTS
            self.push_state_on |= source == Source.STATE
            self.command(Command.PUSH_ENABLE, source)
        elif op.startswith("disable_"):
            source = Source.STATE if op == "disable_state" else Source.EVENTS
            self.command(Command.PUSH_DISABLE, source)
        elif op == "configure":
            interval, retention = arg
            config = pb.Configuration(
                retention_period_ms=retention, state_snapshot_interval_ms=interval
            )
            self.command(Command.UPDATE_CONFIG, Source.STATE, config=config)
        elif op == "invalid":
            cmd, source = arg
            # HELLO (0, 0) is valid once, then an error: one response either way.
            self.command(cmd, source)
        elif op == "produce":
            for _ in range(arg):
                self.number += 1
                self.now += 1.0
                if self.push_state_on:
                    self.eligible.add(self.number)
                with events_go_first(self.session):
                    self.session.snapshot_produced(make_snapshot(self.number), self.now)
        elif op in ("emit", "emit_new"):
            name = "Known" if op == "emit" else "New"
            self.seq += 1
            with events_go_first(self.session):
                self.session.event_produced(make_event(name, self.seq, arg), self.now)
        elif op == "tick":
            self.now += arg / 1000
            self.session.tick(self.now)
        elif op == "read":
            self.read(arg)
        elif op == "read_all":
            self.read(10_000)
        assert self.session.held_bytes <= LIMITS.push_byte_budget
        assert not self.seen or self.session.cursor >= self.seen[-1]

    def read(self, limit: int) -> None:
        for _ in range(limit):
            frame = self.session.next_frame()
            if frame is None:
                return
            message = parse_server_message(frame)
            kind = message.WhichOneof("payload")
            if kind == "state":
                number = (message.state.instant_ts - 1_700_000_000_000) // 1_000
                assert not self.seen or number > self.seen[-1], "a snapshot repeated or went back"
                self.seen.append(number)
                pulled = sum(1 for n in self.seen if n not in self.eligible)
                assert pulled <= self.ready_signals, "a snapshot was sent unasked"
            elif kind == "response":
                rid = message.response.id
                self.responses[rid] = self.responses.get(rid, 0) + 1
            elif kind == "notice":
                assert self.previous != "notice", "two notices for one run of drops"
            if kind in ("state", "event", "notice"):
                self.previous = kind  # responses and the Runtime do not end a run
            self.session.frame_sent(self.now)

    def check_responses(self) -> None:
        self.read(10_000)
        for cid, expected in self.expected.items():
            got = self.responses.get(cid, 0)
            if expected == 0:
                assert got == 0, f"successful REQUEST {cid} got a response"
            else:
                assert got == 1, f"command {cid} got {got} responses"


@settings(max_examples=600, deadline=None)
@given(st.lists(STEPS, min_size=10, max_size=80))
def test_session_invariants_hold_for_any_sequence(steps):
    model = Model()
    for op, arg in steps:
        model.step(op, arg)
    assert model.session.close is None
    model.check_responses()


# Events come often, as in the floods this is about: emit is drawn four times as often.
PUSH_OPERATIONS = ["pause", "resume", "read_all", "enable_state", "enable_events",
                   "disable_state", "disable_events", "produce", "produce", "emit", "emit",
                   "emit", "emit", "emit_new", "tick", "read", "configure"]  # fmt: skip
# A retention long enough that the byte budget, not age, is what usually evicts.
PUSH_ARGUMENTS = {**ARGUMENTS, "configure": st.tuples(st.integers(0, 3_000), st.integers(0, 60_000))}
PUSH_STEPS = st.sampled_from(PUSH_OPERATIONS).flatmap(
    lambda op: st.tuples(st.just(op), PUSH_ARGUMENTS.get(op, st.just(0)))
)


class PushModel:
    """Push streams only: records what was produced for the session and what it sent."""

    def __init__(self, limits: SessionLimits) -> None:
        runtime = pb.ServerMessage()
        runtime.runtime.implementation = "model"
        self.limits = limits
        self.now = 0.0
        self.number = 1
        self.seq = 0
        self.session = Session(limits, encode_server_message(runtime), frozenset({"Known"}),
                               make_snapshot(1), self.now)  # fmt: skip
        self.state_on = self.events_on = False
        #: Push items in the order they were produced for this session.
        self.produced: list[tuple[str, int]] = []
        #: Items unsubscribed before they were sent: they may vanish unreported.
        self.withdrawn: set[tuple[str, int]] = set()
        #: Push items and notices ("notice", 0) in the order they were sent.
        self.sent: list[tuple[str, int]] = []

    def command(self, cmd: int, source: int, config: pb.Configuration | None = None) -> None:
        self.session.receive_command(command(cmd, source, 0, config=config), self.now)

    def step(self, op: str, arg) -> None:
        if op == "pause":
            self.command(Command.PUSH_PAUSE, Source.STATE)
        elif op == "resume":
            self.command(Command.PUSH_RESUME, Source.STATE)
        elif op.startswith("enable_"):
            on_state = op == "enable_state"
            self.state_on |= on_state
            self.events_on |= not on_state
            self.command(Command.PUSH_ENABLE, Source.STATE if on_state else Source.EVENTS)
        elif op.startswith("disable_"):
            kind = "s" if op == "disable_state" else "e"
            if kind == "s":
                self.state_on = False
            else:
                self.events_on = False
            delivered = set(self.sent)
            self.withdrawn |= {i for i in self.produced if i[0] == kind and i not in delivered}
            self.command(Command.PUSH_DISABLE, Source.STATE if kind == "s" else Source.EVENTS)
        elif op == "configure":
            interval, retention = arg
            config = pb.Configuration(
                retention_period_ms=retention, state_snapshot_interval_ms=interval
            )
            self.command(Command.UPDATE_CONFIG, Source.STATE, config=config)
        elif op == "produce":
            for _ in range(arg):
                self.number += 1
                self.now += 1.0
                every = self.session.effective_config.state_snapshot_interval_ms // 1_000
                if self.state_on and self.number % every == 0:
                    self.produced.append(("s", self.number))
                with events_go_first(self.session):
                    self.session.snapshot_produced(make_snapshot(self.number), self.now)
        elif op in ("emit", "emit_new"):
            self.seq += 1
            if self.events_on:
                self.produced.append(("e", self.seq))
            name = "Known" if op == "emit" else "New"
            with events_go_first(self.session):
                self.session.event_produced(make_event(name, self.seq, arg), self.now)
        elif op == "tick":
            self.now += arg / 1000
            self.session.tick(self.now)
        elif op == "read":
            self.read(arg)
        elif op == "read_all":
            self.read(10_000)

    def read(self, limit: int) -> None:
        for _ in range(limit):
            frame = self.session.next_frame()
            if frame is None:
                return
            message = parse_server_message(frame)
            kind = message.WhichOneof("payload")
            if kind == "state":
                self.sent.append(("s", (message.state.instant_ts - 1_700_000_000_000) // 1_000))
            elif kind == "event":
                self.sent.append(("e", json.loads(message.event.content)["seq"]))
            elif kind == "notice":
                self.sent.append(("notice", 0))
            self.session.frame_sent(self.now)

    def check(self) -> None:
        self.command(Command.PUSH_RESUME, Source.STATE)  # what is still held comes out
        self.read(100_000)
        assert self.session.queued == 0 and self.session.held_count == 0
        # The stats count what was queued and not evicted: here, everything sent.
        stats = self.session.stats
        assert stats.snapshots_sent == sum(kind == "s" for kind, _ in self.sent)
        assert stats.events_sent == sum(kind == "e" for kind, _ in self.sent)
        assert stats.notices == sum(kind == "notice" for kind, _ in self.sent)
        position = {item: index for index, item in enumerate(self.produced)}
        sent_items = [item for item in self.sent if item[0] != "notice"]
        sent_items = sent_items[1:]  # the connect snapshot, not a push
        places = [position[item] for item in sent_items]  # KeyError: sent unasked
        assert places == sorted(set(places)), "push items out of production order"
        # Each stretch between two sent push items (and after the last) holds the
        # notices sent there; what was produced there but not sent is its gap.
        stretches: list[int] = [0]
        for item in self.sent[1:]:
            if item[0] == "notice":
                stretches[-1] += 1
            else:
                stretches.append(0)
        bounds = [-1, *places, len(self.produced)]
        for index, notices in enumerate(stretches):
            gap = self.produced[bounds[index] + 1 : bounds[index + 1]]
            where = f"between {self.produced[bounds[index]] if index else 'start'} and the next"
            if not gap:
                assert notices == 0, f"a notice {where} with nothing missing"
            elif any(item not in self.withdrawn for item in gap):
                assert notices == 1, f"{notices} notices {where} for the gap {gap}"
            else:
                assert notices <= 1, f"{notices} notices {where}"


PUSH_LIMITS = SessionLimits(
    base_interval_ms=1_000,
    max_retention_ms=60_000,
    push_byte_budget=2_000,
    queue_bound=3,
    write_timeout_s=1e9,
    commands_per_second=1e9,
    command_burst=10**9,
)


@settings(max_examples=600, deadline=None)
@given(st.lists(PUSH_STEPS, min_size=10, max_size=100))
def test_push_keeps_production_order_and_marks_every_gap_exactly_once(steps):
    model = PushModel(PUSH_LIMITS)
    for op, arg in steps:
        model.step(op, arg)
    assert model.session.close is None
    model.check()


@contextmanager
def compacting_at_once() -> Iterator[None]:
    """The pause buffer compacts its vacant places each time one appears (normally
    only once they outnumber its items: buffers this small would never compact)."""
    saved = session_module._VACANT_SLACK
    session_module._VACANT_SLACK = -(10**9)
    try:
        yield
    finally:
        session_module._VACANT_SLACK = saved


@settings(max_examples=300, deadline=None)
@given(st.lists(STEPS, min_size=10, max_size=80))
def test_session_invariants_hold_when_the_pause_buffer_compacts(steps):
    with compacting_at_once():
        model = Model()
        for op, arg in steps:
            model.step(op, arg)
        assert model.session.close is None
        model.check_responses()


@settings(max_examples=300, deadline=None)
@given(st.lists(PUSH_STEPS, min_size=10, max_size=100))
def test_push_order_and_gaps_hold_when_the_pause_buffer_compacts(steps):
    with compacting_at_once():
        model = PushModel(PUSH_LIMITS)
        for op, arg in steps:
            model.step(op, arg)
        assert model.session.close is None
        model.check()
