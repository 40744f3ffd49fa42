"""The hub on its own, on a fake clock: snapshot numbering, encode-once, fan-out (§4.1, §4.9)."""

from __future__ import annotations

import pytest

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import (
    decode_frame,
    encode_state_frame,
    parse_server_message,
)
from libp2p_introspection.protocol.session import Session, SessionLimits
from libp2p_introspection.server.hub import Hub

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Member:
    """A session in the fan-out; counts the hub's wake-ups instead of doing I/O."""

    def __init__(self, session: Session, peer: str = "test") -> None:
        self.session = session
        self.peer = peer
        self.notified = 0
        self.cancelled = 0

    def notify(self) -> None:
        self.notified += 1

    def cancel(self) -> None:
        self.cancelled += 1

    def frames(self) -> list[bytes]:
        out = []
        while (frame := self.session.next_frame()) is not None:
            out.append(frame)
            self.session.frame_sent(0.0)
        return out


def runtime() -> pb.Runtime:
    value = pb.Runtime(implementation="hub-test", peer_id="QmHub")
    value.event_types.add(name="Known").property_types.add(
        name="n", type=pb.EventType.EventProperty.NUMBER
    )
    return value


def state(instant: int) -> bytes:
    return pb.State(instant_ts=instant).SerializeToString()


def command(cmd: int, source: int) -> bytes:
    message = pb.ClientCommand(id=1, command=cmd, source=source)
    message.version.version = 1
    return message.SerializeToString()


def event(name: str, n: int, with_types: bool = True) -> pb.Event:
    message = pb.Event(ts=1_700_000_000_000 + n, content=f'{{"n": {n}}}')
    message.type.name = name
    if with_types:
        message.type.property_types.add(name="n", type=pb.EventType.EventProperty.NUMBER)
    return message


def joined(hub: Hub, *, events: bool = False, state_push: bool = False) -> Member:
    member = Member(hub.open_session())
    hub.join(member)
    if events:
        member.session.receive_command(command(Command.PUSH_ENABLE, Source.EVENTS), 0.0)
    if state_push:
        member.session.receive_command(command(Command.PUSH_ENABLE, Source.STATE), 0.0)
    member.frames()  # the Runtime, the latest snapshot, the OKs
    return member


@pytest.fixture
def hub() -> Hub:
    return Hub(SessionLimits(base_interval_ms=1000), runtime(), clock=FakeClock())


def test_no_session_before_the_first_snapshot(hub):
    with pytest.raises(RuntimeError, match="no snapshot yet"):
        hub.open_session()


def test_snapshots_are_numbered_one_by_one_from_one(hub):
    for instant in (10, 20, 30):
        hub.publish_snapshot(encode_state_frame(state(instant)))
        assert hub.latest is not None
    assert hub.latest.number == 3
    assert parse_server_message(hub.latest.frame).state.instant_ts == 30
    assert hub.interval_ms == 1000


def test_a_session_starts_with_the_runtime_and_the_latest_snapshot(hub):
    hub.publish_snapshot(encode_state_frame(state(10)))
    hub.publish_snapshot(encode_state_frame(state(20)))
    member = Member(hub.open_session())
    first, second = member.frames()
    assert parse_server_message(first).runtime.implementation == "hub-test"
    assert parse_server_message(second).state.instant_ts == 20
    assert member.session.cursor == 2


def test_a_published_runtime_is_what_new_sessions_and_runtime_requests_get(hub):
    hub.publish_snapshot(encode_state_frame(state(10)))
    before = joined(hub, events=True)
    grown = runtime()
    grown.event_types.add(name="AppDeclared")
    hub.publish_runtime(grown)
    after = Member(hub.open_session())
    first, _ = after.frames()
    assert [t.name for t in parse_server_message(first).runtime.event_types] == [
        "Known",
        "AppDeclared",
    ]
    before.session.receive_command(command(Command.REQUEST, Source.RUNTIME), 0.0)
    (sent,) = before.frames()
    assert parse_server_message(sent).runtime.event_types[1].name == "AppDeclared"
    # The session opened before was not told the new type: its first event says its types.
    hub.publish_event(event("AppDeclared", 1))
    hub.publish_event(event("AppDeclared", 2))
    assert [parse_server_message(f).event.type.property_types for f in before.frames()] == [
        [],
        [],
    ]  # told by the Runtime it asked for, so names only


def test_one_snapshot_is_shared_by_every_session_byte_for_byte(hub):
    hub.publish_snapshot(encode_state_frame(state(10)))
    members = [joined(hub, state_push=True) for _ in range(3)]
    frame = encode_state_frame(state(20))
    hub.publish_snapshot(frame)
    for member in members:
        (sent,) = member.frames()
        assert sent is frame  # the same bytes object, not a copy per session
        assert member.notified >= 1


def test_an_event_is_encoded_once_for_every_session(hub, monkeypatch):
    hub.publish_snapshot(encode_state_frame(state(10)))
    members = [joined(hub, events=True) for _ in range(3)]
    calls = []
    import libp2p_introspection.protocol.session as session_module

    real = session_module.encode_server_message

    def counting(message):
        calls.append(message.WhichOneof("payload"))
        return real(message)

    monkeypatch.setattr(session_module, "encode_server_message", counting)
    hub.publish_event(event("Undeclared", 1))
    # The name-only frame once, and the frame with property types once, for all three.
    assert calls == ["event", "event"]
    sent = [member.frames() for member in members]
    assert all(frames[0] is sent[0][0] for frames in sent)
    told = parse_server_message(sent[0][0]).event.type
    assert told.name == "Undeclared" and [p.name for p in told.property_types] == ["n"]


def test_a_declared_type_goes_name_only_and_the_full_frame_is_never_built(hub, monkeypatch):
    hub.publish_snapshot(encode_state_frame(state(10)))
    member = joined(hub, events=True)
    calls = []
    import libp2p_introspection.protocol.session as session_module

    real = session_module.encode_server_message
    monkeypatch.setattr(
        session_module, "encode_server_message", lambda m: calls.append(1) or real(m)
    )
    hub.publish_event(event("Known", 1))
    (frame,) = member.frames()
    assert calls == [1]  # only the name-only frame: every session knows the type
    assert not parse_server_message(frame).event.type.property_types


def test_a_replayed_event_goes_out_as_given(hub):
    hub.publish_snapshot(encode_state_frame(state(10)))
    member = joined(hub, events=True)
    message = pb.ServerMessage()
    message.event.CopyFrom(event("Undeclared", 7))
    from libp2p_introspection.protocol.framing import encode_server_message

    frame = encode_server_message(message)
    hub.publish_event(message.event, frame)
    (sent,) = member.frames()
    assert sent is frame
    assert decode_frame(sent) == decode_frame(frame)


def test_fan_out_reaches_subscribers_only_and_stops_on_leave(hub):
    hub.publish_snapshot(encode_state_frame(state(10)))
    listening = joined(hub, events=True)
    deaf = joined(hub)
    hub.publish_event(event("Known", 1))
    assert len(listening.frames()) == 1
    assert deaf.frames() == []
    hub.leave(listening)
    hub.publish_event(event("Known", 2))
    assert listening.frames() == []
    assert hub.events_published == 2


def test_events_with_no_session_are_counted_and_not_encoded(hub, monkeypatch):
    hub.publish_snapshot(encode_state_frame(state(10)))
    import libp2p_introspection.protocol.session as session_module

    monkeypatch.setattr(session_module, "encode_server_message", lambda m: pytest.fail("encoded"))
    hub.publish_event(event("Undeclared", 1))
    assert hub.events_published == 1


def test_tick_ages_sessions_and_close_all_cancels_them(hub):
    hub.publish_snapshot(encode_state_frame(state(10)))
    member = joined(hub)
    member.session.receive_command(command(Command.REQUEST, Source.RUNTIME), 0.0)
    hub.clock.now = 60.0  # the client read nothing for longer than the write timeout
    hub.tick()
    assert member.session.close is not None and member.session.close.code == 1008
    assert member.notified >= 1
    hub.close_all()
    assert member.cancelled == 1


def test_a_frame_the_close_finished_is_counted_as_sent_and_one_it_did_not_is_not():
    # The writer is cancelled half-way through a frame when the session closes; the
    # close writes the rest first (§4.6). The "sent" counts (the "session closed" log
    # line, ClosedSession.sent) must say what the client got, kind by kind.
    from libp2p_introspection.protocol import pb
    from libp2p_introspection.protocol.framing import encode_server_message
    from libp2p_introspection.server.session_io import SessionHandle

    frame = encode_server_message(pb.ServerMessage(state=pb.State(instant_ts=1)))
    finished = SessionHandle(session=None, peer="p")  # type: ignore[arg-type]
    finished.frame_queued(frame, mark=1_000)
    finished.settle(bytes_sent=1_000)
    assert finished.sent == {"state": 1}
    cut = SessionHandle(session=None, peer="p")  # type: ignore[arg-type]
    cut.frame_queued(frame, mark=1_000)
    cut.settle(bytes_sent=999)  # the connection was lost before its end
    assert cut.sent == {}
