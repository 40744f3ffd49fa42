"""Measured traffic: exact stream payload, connection/node totals, inst_bw over the window."""

from __future__ import annotations

from typing import Any

import trio
from introspector_harness import (
    FakeClock,
    connect,
    connections_to,
    gauges,
    running_hosts,
    streams_with,
    wait_until,
)

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

PROTOCOL = "/test/count/1.0.0"
PAYLOAD = 100_000
CHUNK = 10_000
WINDOW_MS = 2_000


def _count_handler(done: trio.Event) -> Any:
    """Read exactly PAYLOAD bytes, reply with their count as ASCII, close."""

    async def handler(stream: Any) -> None:
        total = 0
        while total < PAYLOAD:
            total += len(await stream.read(PAYLOAD - total))
        await stream.write(str(total).encode())
        await stream.close()
        done.set()

    return handler


def _cum(traffic: pb.Traffic) -> tuple[int, int, int, int]:
    return (
        traffic.traffic_in.cum_bytes,
        traffic.traffic_in.cum_packets,
        traffic.traffic_out.cum_bytes,
        traffic.traffic_out.cum_packets,
    )


class Monotonic:
    """Checks that every cumulative value of every object only grows across snapshots."""

    def __init__(self) -> None:
        self.last: dict[bytes, tuple[int, int, int, int]] = {}

    def check(self, state: pb.State) -> None:
        items = [(b"node", state.traffic)]
        for conn in state.subsystems.connections:
            items.append((conn.id, conn.traffic))
            items.extend((s.id, s.traffic) for s in conn.streams.streams)
        for key, traffic in items:
            now = _cum(traffic)
            before = self.last.get(key, (0, 0, 0, 0))
            assert all(n >= b for n, b in zip(now, before, strict=True)), (key, before, now)
            self.last[key] = now


def _assert_bw(prev: pb.Traffic, cur: pb.Traffic, window_ms: int) -> None:
    for p, c in zip(gauges(prev), gauges(cur), strict=True):
        assert c.inst_bw == (c.cum_bytes - p.cum_bytes) * 1000 // window_ms


async def test_stream_payload_exact_and_totals_consistent() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (sender, receiver):
            tx = HostIntrospector(sender, clock_ms=clock)
            rx = HostIntrospector(receiver, clock_ms=clock)
            done = trio.Event()
            receiver.set_stream_handler(PROTOCOL, _count_handler(done))
            await connect(sender, receiver)
            tx_mono, rx_mono = Monotonic(), Monotonic()

            stream = await sender.new_stream(receiver.get_id(), [PROTOCOL])
            clock.advance(WINDOW_MS)
            prev_tx = tx.state()
            tx_mono.check(prev_tx)
            rx_mono.check(rx.state())
            for _ in range(PAYLOAD // CHUNK):
                await stream.write(b"x" * CHUNK)
                clock.advance(WINDOW_MS)
                cur_tx = tx.state()
                assert cur_tx.start_ts == prev_tx.instant_ts
                assert cur_tx.snapshot_duration_ms == WINDOW_MS
                tx_mono.check(cur_tx)
                rx_mono.check(rx.state())
                _assert_bw(prev_tx.traffic, cur_tx.traffic, WINDOW_MS)
                (s_prev,) = streams_with(prev_tx, PROTOCOL)
                (s_cur,) = streams_with(cur_tx, PROTOCOL)
                _assert_bw(s_prev.traffic, s_cur.traffic, WINDOW_MS)
                assert s_cur.traffic.traffic_out.inst_bw == CHUNK * 1000 // WINDOW_MS
                prev_tx = cur_tx

            reply = await stream.read(16)
            assert reply == str(PAYLOAD).encode()
            await done.wait()
            # Poll the receiver until a snapshot reports its stream CLOSED (the
            # handler closed it); that snapshot is the one to check, since a
            # closed stream is reported exactly once.
            rx_seen: list[pb.State] = []

            def rx_closed() -> bool:
                state = rx.state()
                rx_mono.check(state)
                if any(s.status == pb.CLOSED for s in streams_with(state, PROTOCOL)):
                    rx_seen.append(state)
                    return True
                return False

            await wait_until(rx_closed)

            clock.advance(WINDOW_MS)
            tx_state = tx.state()
            (s_tx,) = streams_with(tx_state, PROTOCOL)
            assert s_tx.role == pb.INITIATOR and s_tx.status == pb.ACTIVE
            assert s_tx.traffic.traffic_out.cum_bytes == PAYLOAD
            assert s_tx.traffic.traffic_out.cum_packets == PAYLOAD // CHUNK
            assert s_tx.traffic.traffic_in.cum_bytes == len(reply)
            tx_mono.check(tx_state)
            (conn_tx,) = connections_to(tx_state, receiver.get_id().to_base58())
            assert conn_tx.traffic.traffic_out.cum_bytes >= PAYLOAD
            assert tx_state.traffic.traffic_out.cum_bytes >= conn_tx.traffic.traffic_out.cum_bytes
            assert conn_tx.traffic.traffic_in.cum_bytes >= len(reply)

            await stream.close()

            rx_state = rx_seen[0]
            (s_rx,) = streams_with(rx_state, PROTOCOL)
            assert s_rx.role == pb.RESPONDER
            assert s_rx.status == pb.CLOSED and s_rx.timeline.close_ts > 0
            assert s_rx.traffic.traffic_in.cum_bytes == PAYLOAD
            assert s_rx.traffic.traffic_out.cum_bytes == len(reply)
            (conn_rx,) = connections_to(rx_state, sender.get_id().to_base58())
            assert conn_rx.traffic.traffic_in.cum_bytes >= PAYLOAD
            assert rx_state.traffic.traffic_in.cum_bytes >= conn_rx.traffic.traffic_in.cum_bytes
            # The raw connection carries everything the stream did, plus framing/crypto.
            assert conn_tx.traffic.traffic_out.cum_bytes > s_tx.traffic.traffic_out.cum_bytes

            # A closed stream is reported once as CLOSED, then dropped.
            assert streams_with(rx.state(), PROTOCOL) == []
            tx.detach()
            rx.detach()


async def test_adopted_connection_counts_from_attach_and_node_keeps_closed_totals() -> None:
    clock = FakeClock()
    lifetime_ms = 1_000
    with trio.fail_after(30):
        async with running_hosts(2) as (sender, receiver):
            done = trio.Event()
            receiver.set_stream_handler(PROTOCOL, _count_handler(done))
            await connect(sender, receiver)
            # Traffic before attach (handshake, identify) must not be counted.
            tx = HostIntrospector(sender, closed_connection_lifetime_ms=lifetime_ms, clock_ms=clock)
            first = tx.state()
            assert first.start_ts == first.instant_ts == clock.now
            (conn,) = connections_to(first, receiver.get_id().to_base58())
            mono = Monotonic()
            mono.check(first)

            stream = await sender.new_stream(receiver.get_id(), [PROTOCOL])
            await stream.write(b"y" * PAYLOAD)
            assert await stream.read(16) == str(PAYLOAD).encode()
            await done.wait()
            await stream.close()
            clock.advance(WINDOW_MS)
            state = tx.state()
            mono.check(state)
            (conn,) = connections_to(state, receiver.get_id().to_base58())
            out = conn.traffic.traffic_out.cum_bytes
            # Everything counted was sent after attach: payload plus bounded overhead.
            assert PAYLOAD <= out < PAYLOAD + 4_096
            (s,) = streams_with(state, PROTOCOL)
            assert s.traffic.traffic_out.cum_bytes == PAYLOAD

            await sender.disconnect(receiver.get_id())
            await wait_until(
                lambda: (
                    connections_to(tx.state(), receiver.get_id().to_base58())[0].status == pb.CLOSED
                )
            )
            clock.advance(lifetime_ms)
            gone = tx.state()
            assert connections_to(gone, receiver.get_id().to_base58()) == []
            mono.check(gone)
            # Node totals still include the purged connection.
            assert gone.traffic.traffic_out.cum_bytes >= out
            tx.detach()


async def test_empty_window_reports_zero_bandwidth() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            intro = HostIntrospector(h1, clock_ms=clock)
            await connect(h1, h2)
            state = intro.state()  # same instant as attach: empty window
            assert state.snapshot_duration_ms == 0
            assert state.traffic.traffic_out.cum_bytes > 0
            assert state.traffic.traffic_out.inst_bw == 0
            clock.advance(500)
            later = intro.state()
            # The bytes of the empty window are attributed to the next one.
            assert later.traffic.traffic_out.inst_bw == (
                later.traffic.traffic_out.cum_bytes * 1000 // 500
            )
            intro.detach()


async def test_stream_open_before_attach_counts_from_attach() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (sender, receiver):
            done = trio.Event()
            receiver.set_stream_handler(PROTOCOL, _count_handler(done))
            await connect(sender, receiver)
            stream = await sender.new_stream(receiver.get_id(), [PROTOCOL])
            await stream.write(b"a" * 30_000)  # before attach: not counted
            intro = HostIntrospector(sender)
            (adopted,) = streams_with(intro.state(), PROTOCOL)
            assert adopted.role == pb.INITIATOR and adopted.status == pb.ACTIVE
            assert adopted.traffic.traffic_out.cum_bytes == 0
            await stream.write(b"b" * (PAYLOAD - 30_000))
            assert await stream.read(16) == str(PAYLOAD).encode()
            await done.wait()
            (s,) = streams_with(intro.state(), PROTOCOL)
            assert s.id == adopted.id
            assert s.traffic.traffic_out.cum_bytes == PAYLOAD - 30_000
            assert s.traffic.traffic_in.cum_bytes == len(str(PAYLOAD))
            await stream.close()
            intro.detach()
