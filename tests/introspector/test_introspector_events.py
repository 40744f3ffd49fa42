"""Connection and stream events through the sink: names, timestamps, JSON keys and types."""

from __future__ import annotations

from typing import Any

import trio
from event_checks import FakeClock, check_events
from introspector_harness import EventLog, connect, running_hosts, wait_until

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

PROTOCOL = "/test/events/1.0.0"
P = pb.EventType.EventProperty


async def test_connection_and_stream_events() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            i1 = HostIntrospector(h1, clock_ms=clock)
            i2 = HostIntrospector(h2, clock_ms=clock)
            log1, log2 = EventLog(), EventLog()
            i1.set_event_sink(log1)
            i2.set_event_sink(log2)
            handled = trio.Event()

            async def handler(stream: Any) -> None:
                await stream.write(await stream.read(4))
                await stream.close()
                handled.set()

            h2.set_stream_handler(PROTOCOL, handler)
            p1, p2 = h1.get_id().to_base58(), h2.get_id().to_base58()
            await connect(h1, h2)
            await wait_until(lambda: bool(log2.named("ConnectionOpened")))
            stream = await h1.new_stream(h2.get_id(), [PROTOCOL])
            await stream.write(b"ping")
            assert await stream.read(4) == b"ping"
            await handled.wait()
            await stream.close()
            await h1.disconnect(h2.get_id())
            await wait_until(
                lambda: bool(log1.named("ConnectionClosed") and log2.named("ConnectionClosed"))
            )

            for intro, log in ((i1, log1), (i2, log2)):
                check_events(intro.runtime(), log.events)
                assert all(e.ts == clock.now for e in log.events)

            (opened1,) = log1.named("ConnectionOpened")
            (opened2,) = log2.named("ConnectionOpened")
            assert opened1["peerId"] == p2 and opened1["direction"] == "outbound"
            assert opened2["peerId"] == p1 and opened2["direction"] == "inbound"
            assert opened1["multiplexer"] == "/yamux/1.0.0" and opened1["encryption"] == "/noise"
            assert opened1["remoteAddr"] == opened2["localAddr"]
            (closed1,) = log1.named("ConnectionClosed")
            assert closed1["connId"] == opened1["connId"]
            assert closed1["bytesOut"] > 4 and closed1["closeTs"] == clock.now
            assert (closed1["status"], closed1["reason"]) == ("CLOSED", "closed locally")
            (closed2,) = log2.named("ConnectionClosed")
            assert (closed2["status"], closed2["reason"]) == ("CLOSED", "closed by remote")

            # The connection id in events is the hex of the snapshot's Connection.id.
            state = i1.state()
            assert bytes.fromhex(opened1["connId"]) in {c.id for c in state.subsystems.connections}

            s_open = [e for e in log1.named("StreamOpened") if e["protocol"] == PROTOCOL]
            s_closed = [e for e in log1.named("StreamClosed") if e["protocol"] == PROTOCOL]
            assert len(s_open) == len(s_closed) == 1
            assert s_open[0]["streamId"] == s_closed[0]["streamId"]
            assert s_open[0]["direction"] == "outbound"
            assert s_closed[0]["bytesOut"] == 4 and s_closed[0]["bytesIn"] == 4
            assert (s_closed[0]["status"], s_closed[0]["reason"]) == ("CLOSED", "closed")
            r_open = [e for e in log2.named("StreamOpened") if e["protocol"] == PROTOCOL]
            r_closed = [e for e in log2.named("StreamClosed") if e["protocol"] == PROTOCOL]
            assert len(r_open) == len(r_closed) == 1
            assert r_open[0]["direction"] == "inbound"
            # Identify streams produce events too, on both sides.
            assert any(e["protocol"] == "/ipfs/id/1.0.0" for e in log1.named("StreamOpened"))
            i1.detach()
            i2.detach()


async def test_failing_sink_never_reaches_the_node() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            intro = HostIntrospector(h1)
            calls: list[str] = []

            def bad_sink(event: pb.Event) -> None:
                calls.append(event.type.name)
                raise RuntimeError("sink is broken")

            intro.set_event_sink(bad_sink)

            async def handler(stream: Any) -> None:
                await stream.write(await stream.read(3))
                await stream.close()

            h2.set_stream_handler(PROTOCOL, handler)
            await connect(h1, h2)
            stream = await h1.new_stream(h2.get_id(), [PROTOCOL])
            await stream.write(b"abc")
            assert await stream.read(3) == b"abc"
            await stream.close()
            assert "ConnectionOpened" in calls and "StreamOpened" in calls
            intro.set_event_sink(None)
            before = len(calls)
            await h1.disconnect(h2.get_id())
            assert len(calls) == before
            assert intro.state().subsystems.connections[0].status == pb.CLOSED
            intro.detach()
