"""A minimal in-memory IntrospectionSource for server tests that need no libp2p node."""

from __future__ import annotations

import json
import time

from libp2p_introspection.abc import EventSink, SampledSource
from libp2p_introspection.protocol import pb


class StubSource(SampledSource):
    """Snapshots whose ``instant_ts`` is wall time and which count themselves."""

    def __init__(self) -> None:
        self.sink: EventSink | None = None
        self.states = 0
        self.fail_next_state = False

    def runtime(self) -> pb.Runtime:
        runtime = pb.Runtime(implementation="stub", version="0", platform="test", peer_id="QmStub")
        event_type = runtime.event_types.add(name="Tick")
        event_type.property_types.add(name="n", type=pb.EventType.EventProperty.NUMBER)
        return runtime

    def state(self) -> pb.State:
        if self.fail_next_state:
            self.fail_next_state = False
            raise RuntimeError("simulated source failure")
        self.states += 1
        state = pb.State(instant_ts=int(time.time() * 1000), snapshot_duration_ms=self.states)
        connection = state.subsystems.connections.add(peer_id=f"peer-{self.states}")
        connection.id = self.states.to_bytes(8, "big")
        return state

    def set_event_sink(self, sink: EventSink | None) -> None:
        self.sink = sink

    def emit(self, n: int, padding: int = 0) -> None:
        assert self.sink is not None
        content = {"n": n, "pad": "x" * padding} if padding else {"n": n}
        self.sink(pb.Event(type=pb.EventType(name="Tick"), ts=int(time.time() * 1000),
                           content=json.dumps(content)))  # fmt: skip
