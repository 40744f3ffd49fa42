"""Property tests: random sequences of commands, snapshot ticks, events, reads and clock
steps against the session state machine keep its invariants:

- no snapshot is sent twice and ``instant_ts`` only rises;
- none is sent unasked (each is pushed while state push was on, or answers a ready signal);
- the pause buffer stays within its byte budget;
- every command but a successful ``REQUEST`` gets exactly one response (§4.3, §4.8);
- a run of drops is reported by one notice, never two in a row.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from session_harness import Command, Source, command, make_event, make_snapshot

from libp2p_introspection.protocol import pb
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
                self.session.snapshot_produced(make_snapshot(self.number), self.now)
        elif op in ("emit", "emit_new"):
            name = "Known" if op == "emit" else "New"
            self.session.event_produced(make_event(name, 0, arg), self.now)
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
            self.previous = kind
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
