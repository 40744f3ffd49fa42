"""Per-protocol traffic (State.protocols) on real py-libp2p hosts: exact sums to the
byte of the streams opened, closed ones included, "" for unnegotiated streams."""

from __future__ import annotations

from typing import Any

import trio
from introspector_harness import FakeClock, connect, running_hosts, streams_with, wait_until

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb

ALPHA = "/test/alpha/1.0.0"
BETA = "/test/beta/1.0.0"
UNKNOWN = "/test/nobody-speaks-this/1.0.0"
WINDOW_MS = 1_000
#: Per stream: (protocol, chunk sizes written by the dialer, reply size).
PLAN: list[tuple[str, list[int], int]] = [
    (ALPHA, [1_000, 2_345], 17),
    (ALPHA, [7], 4_096),
    (ALPHA, [300, 300, 300], 1),
    (BETA, [12_345], 99),
    (BETA, [1, 2, 3, 4], 10_000),
]
#: Indices of PLAN whose streams the dialer closes (the others stay open).
CLOSED = {0, 2, 3}


async def _handler(stream: Any) -> None:
    """Read the 4-byte request size, that many bytes, the 4-byte reply size; reply; wait for EOF."""
    expected = int.from_bytes(await _read_exactly(stream, 4), "big")
    await _read_exactly(stream, expected)
    reply = int.from_bytes(await _read_exactly(stream, 4), "big")
    await stream.write(b"r" * reply)
    try:
        while await stream.read(1024):
            pass
    except Exception:
        pass
    await stream.close()


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _by_protocol(state: pb.State) -> dict[str, pb.ProtocolStats]:
    stats = {p.protocol: p for p in state.protocols}
    assert len(stats) == len(state.protocols), "one entry per protocol"
    return stats


def _cum(stats: pb.ProtocolStats) -> tuple[int, int, int, int, int]:
    t = stats.traffic
    return (
        t.traffic_in.cum_bytes, t.traffic_in.cum_packets,
        t.traffic_out.cum_bytes, t.traffic_out.cum_packets, stats.streams_opened,
    )  # fmt: skip


class Lifetime:
    """Checks that every protocol stays and its cumulative values never decrease, and that
    each protocol's sums equal the sums over the streams the snapshot reports (closed
    ones included, once reported: kept by this checker as their last reported values)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, int, int, int, int]] = {}
        self.streams: dict[bytes, tuple[str, int, int, int, int]] = {}
        self.ended: set[bytes] = set()

    def check(self, state: pb.State) -> dict[str, pb.ProtocolStats]:
        stats = _by_protocol(state)
        assert set(self.last) <= set(stats), "a protocol disappeared"
        for name, before in self.last.items():
            now = _cum(stats[name])
            assert all(n >= b for n, b in zip(now, before, strict=True)), (name, before, now)
        for name, p in stats.items():  # inst_bw: bytes/s over the window, from the last cum
            before = self.last.get(name, (0,) * 5)
            t, window = p.traffic, state.snapshot_duration_ms
            assert t.traffic_in.inst_bw == (t.traffic_in.cum_bytes - before[0]) * 1000 // window
            assert t.traffic_out.inst_bw == (t.traffic_out.cum_bytes - before[2]) * 1000 // window
        self.last = {name: _cum(p) for name, p in stats.items()}
        active: dict[str, int] = {}
        for conn in state.subsystems.connections:
            for s in conn.streams.streams:
                if s.status == pb.ACTIVE and not s.protocol:
                    continue  # negotiating: counted nowhere yet
                t = s.traffic
                self.streams[s.id] = (
                    s.protocol, t.traffic_in.cum_bytes, t.traffic_in.cum_packets,
                    t.traffic_out.cum_bytes, t.traffic_out.cum_packets,
                )  # fmt: skip
                if s.status == pb.ACTIVE:
                    active[s.protocol] = active.get(s.protocol, 0) + 1
                elif s.protocol in (ALPHA, BETA):
                    self.ended.add(s.id)
        for name, p in stats.items():
            mine = [v[1:] for v in self.streams.values() if v[0] == name]
            sums = tuple(sum(column) for column in zip(*mine, strict=True)) if mine else (0,) * 4
            assert _cum(p)[:4] == sums, (name, _cum(p), sums)
            assert p.streams_opened == len(mine), name
            assert p.active_streams == active.get(name, 0), name
            assert p.traffic.HasField("traffic_in") and p.traffic.HasField("traffic_out")
        return stats


async def test_protocol_sums_are_exact_and_keep_closed_streams() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (dialer, listener):
            tx = HostIntrospector(dialer, clock_ms=clock)
            rx = HostIntrospector(listener, clock_ms=clock)
            listener.set_stream_handler(ALPHA, _handler)
            listener.set_stream_handler(BETA, _handler)
            await connect(dialer, listener)
            tx_check, rx_check = Lifetime(), Lifetime()
            first, _ = _snapshot(tx, tx_check, clock)
            assert not {ALPHA, BETA} & set(_by_protocol(first))
            _snapshot(rx, rx_check, clock)

            streams = []
            for protocol, chunks, reply in PLAN:
                stream = await dialer.new_stream(listener.get_id(), [protocol])
                await stream.write(sum(chunks).to_bytes(4, "big"))
                for size in chunks:
                    await stream.write(b"q" * size)
                await stream.write(reply.to_bytes(4, "big"))
                assert len(await _read_exactly(stream, reply)) == reply
                streams.append(stream)
            before = _by_protocol(_snapshot(tx, tx_check, clock)[0])
            _snapshot(rx, rx_check, clock)

            for index in sorted(CLOSED):
                await streams[index].close()
            # Each closed stream is reported ended in one snapshot, then dropped; poll
            # (bounded) until the listener's introspector has reported all of them.
            await wait_until(lambda: len(_snapshot(rx, rx_check, clock)[1]) >= len(CLOSED))
            await wait_until(lambda: len(_snapshot(tx, tx_check, clock)[1]) >= len(CLOSED))
            for _ in range(3):  # then purged: the totals stay
                tx_state, _ = _snapshot(tx, tx_check, clock)
                rx_state, _ = _snapshot(rx, rx_check, clock)
            after, rx_stats = _by_protocol(tx_state), _by_protocol(rx_state)

            for protocol in (ALPHA, BETA):
                plan = [(c, r) for p, c, r in PLAN if p == protocol]
                sent = sum(sum(c) + 8 for c, _ in plan)  # payload + two 4-byte sizes
                writes = sum(len(c) + 2 for c, _ in plan)
                replied = sum(r for _, r in plan)
                still_open = sum(1 for i, (p, _, _) in enumerate(PLAN) if p == protocol
                                 and i not in CLOSED)  # fmt: skip
                mine = after[protocol]
                assert mine.traffic.traffic_out.cum_bytes == sent
                assert mine.traffic.traffic_out.cum_packets == writes
                assert mine.traffic.traffic_in.cum_bytes == replied
                assert mine.streams_opened == len(plan)
                assert mine.active_streams == still_open
                assert before[protocol].active_streams == len(plan)
                theirs = rx_stats[protocol]
                assert theirs.traffic.traffic_in.cum_bytes == sent
                assert theirs.traffic.traffic_out.cum_bytes == replied
                assert theirs.streams_opened == len(plan)
                assert theirs.active_streams == still_open
            # Nothing moved in the last windows: no bandwidth; the streams are not in
            # the snapshot any more, yet the totals are.
            assert after[ALPHA].traffic.traffic_out.inst_bw == 0
            assert not [s for s in streams_with(tx_state, ALPHA) if s.status != pb.ACTIVE]


def _snapshot(
    intro: HostIntrospector, check: Lifetime, clock: FakeClock
) -> tuple[pb.State, set[bytes]]:
    """A snapshot one window later, checked; with the ids of every stream reported ended."""
    clock.advance(WINDOW_MS)
    state = intro.state()
    check.check(state)
    return state, check.ended


async def test_streams_closed_before_negotiating_count_under_the_empty_protocol() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(2) as (dialer, listener):
            rx = HostIntrospector(listener, clock_ms=clock)
            listener.set_stream_handler(ALPHA, _handler)
            await connect(dialer, listener)
            check = Lifetime()
            _snapshot(rx, check, clock)
            unnamed = _by_protocol(rx.state()).get("")
            opened_before = unnamed.streams_opened if unnamed is not None else 0
            for _ in range(2):
                try:
                    await dialer.new_stream(listener.get_id(), [UNKNOWN])
                except Exception:
                    pass  # the listener speaks no such protocol
                else:
                    raise AssertionError("negotiation should fail")
            await wait_until(
                lambda: (
                    _by_protocol(_snapshot(rx, check, clock)[0])
                    .get("", pb.ProtocolStats())
                    .streams_opened
                    >= opened_before + 2
                )
            )
            stats = _by_protocol(_snapshot(rx, check, clock)[0])
            assert stats[""].streams_opened == opened_before + 2
            assert stats[""].active_streams == 0
            assert UNKNOWN not in stats
