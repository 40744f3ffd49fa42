"""Drive a Session with a fake clock and decode what it sends."""

from __future__ import annotations

from dataclasses import dataclass, field

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_server_message, parse_server_message
from libp2p_introspection.protocol.session import EventItem, Session, SessionLimits, Snapshot

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source


def make_snapshot(number: int, base_ms: int = 1_000) -> Snapshot:
    message = pb.ServerMessage()
    message.state.instant_ts = 1_700_000_000_000 + number * base_ms
    message.state.start_ts = message.state.instant_ts - base_ms
    return Snapshot(number, encode_server_message(message))


def make_event(type_name: str, seq: int, padding: int = 0) -> EventItem:
    short = pb.ServerMessage()
    short.event.type.name = type_name
    short.event.ts = 1_700_000_000_000 + seq
    short.event.content = f'{{"seq": {seq}, "pad": "{"x" * padding}"}}'
    full = pb.ServerMessage()
    full.CopyFrom(short)
    prop = full.event.type.property_types.add()
    prop.name = "seq"
    prop.type = pb.EventType.EventProperty.NUMBER
    return EventItem(type_name, encode_server_message(short), encode_server_message(full))


def command(
    cmd: int, source: int = Source.STATE, cid: int = 0, config: pb.Configuration | None = None
) -> bytes:
    message = pb.ClientCommand(id=cid, command=cmd, source=source)
    message.version.version = 1
    if config is not None:
        message.config.CopyFrom(config)
    return message.SerializeToString()


@dataclass
class Harness:
    """A session plus a fake monotonic clock and a fake snapshot clock."""

    limits: SessionLimits = field(default_factory=SessionLimits)
    now: float = 0.0
    number: int = 1
    event_seq: int = 0

    def __post_init__(self) -> None:
        runtime = pb.ServerMessage()
        runtime.runtime.implementation = "py-libp2p"
        runtime.runtime.peer_id = "QmTest"
        runtime.runtime.event_types.add(name="Known")
        self.session = Session(
            self.limits,
            encode_server_message(runtime),
            frozenset({"Known"}),
            make_snapshot(1),
            self.now,
        )

    # inputs
    def send(self, cmd: int, source: int = Source.STATE, cid: int = 0, **kw) -> None:
        self.session.receive_command(command(cmd, source, cid, **kw), self.now)

    def produce(self, count: int = 1) -> None:
        for _ in range(count):
            self.number += 1
            self.now += self.limits.base_interval_ms / 1000
            self.session.snapshot_produced(make_snapshot(self.number), self.now)

    def emit(self, type_name: str = "Known", padding: int = 0) -> int:
        self.event_seq += 1
        self.session.event_produced(make_event(type_name, self.event_seq, padding), self.now)
        return self.event_seq

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.session.tick(self.now)

    # outputs
    def read(self, limit: int | None = None) -> list[pb.ServerMessage]:
        """Read frames as a fast client would: take, decode, acknowledge."""
        out = []
        while limit is None or len(out) < limit:
            frame = self.session.next_frame()
            if frame is None:
                break
            out.append(parse_server_message(frame))
            self.session.frame_sent(self.now)
        return out


def kinds(messages: list[pb.ServerMessage]) -> list[str]:
    return [m.WhichOneof("payload") for m in messages]


def snapshot_numbers(messages: list[pb.ServerMessage], base_ms: int = 1_000) -> list[int]:
    return [
        (m.state.instant_ts - 1_700_000_000_000) // base_ms
        for m in messages
        if m.WhichOneof("payload") == "state"
    ]


def event_seqs(messages: list[pb.ServerMessage]) -> list[int]:
    import json

    return [
        json.loads(m.event.content)["seq"] for m in messages if m.WhichOneof("payload") == "event"
    ]
