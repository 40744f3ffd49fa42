"""A source that floods events, for recorder backpressure tests."""

from __future__ import annotations

import json
import time

import trio

from libp2p_introspection.abc import EventSink, SampledSource
from libp2p_introspection.protocol import pb


class FloodSource(SampledSource):
    def __init__(self) -> None:
        self.sink: EventSink | None = None
        self.sent = 0

    def runtime(self) -> pb.Runtime:
        runtime = pb.Runtime(implementation="flood", peer_id="QmFlood")
        runtime.event_types.add(name="Blip").property_types.add(
            name="n", type=pb.EventType.EventProperty.NUMBER
        )
        return runtime

    def state(self) -> pb.State:
        return pb.State(instant_ts=int(time.time() * 1000))

    def set_event_sink(self, sink: EventSink | None) -> None:
        self.sink = sink

    async def flood(self) -> None:
        """About 20 000 events per second, in bursts."""
        while True:
            for _ in range(200):
                if self.sink is not None:
                    self.sent += 1
                    self.sink(pb.Event(type=pb.EventType(name="Blip"), ts=int(time.time() * 1000),
                                       content=json.dumps({"n": self.sent})))  # fmt: skip
            await trio.sleep(0.01)
