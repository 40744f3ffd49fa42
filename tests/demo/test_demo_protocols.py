"""The demo's stream protocols between two real nodes (no background work)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import trio

from libp2p_introspection.demo import (
    BULK_PROTOCOL_ID,
    ECHO_PROTOCOL_ID,
    PING_PROTOCOL_ID,
    DemoNetwork,
    DemoOptions,
)
from libp2p_introspection.demo._quiet import quiet_libp2p_warnings
from libp2p_introspection.demo.node import GOSSIPSUB_PROTOCOLS, DemoRecordValidator
from libp2p_introspection.demo.protocols import bulk_session, echo_session, ping_session

IDLE = DemoOptions(nodes=2, seed=7, churn=False, work_rate=0, dht_rate=0, pubsub_rate=0)


async def test_ping_echo_bulk_sessions() -> None:
    net = DemoNetwork(IDLE)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(net.run)
            a, b = net.nodes
            rtts = await ping_session(a.host, b.peer_id, 3, 0.01, a.stats)
            assert len(rtts) == 3 and all(r >= 0 for r in rtts)
            await echo_session(a.host, b.peer_id, [10, 3000, 1], 0.01, a.stats)
            await bulk_session(b.host, a.peer_id, True, 100_000, 0, b.stats)  # upload
            await bulk_session(b.host, a.peer_id, False, 50_000, 2_000_000, b.stats)  # download
            with pytest.raises(ValueError):
                await bulk_session(b.host, a.peer_id, True, 0, 0, b.stats)
            # Handlers run in their own tasks; let them finish their bookkeeping.
            while a.stats.payload_bytes_received < 100_000 + 3011:
                await trio.sleep(0.01)
        assert a.stats.streams_out == {PING_PROTOCOL_ID: 1, ECHO_PROTOCOL_ID: 1}
        assert b.stats.streams_in[PING_PROTOCOL_ID] == 1
        assert b.stats.streams_in[ECHO_PROTOCOL_ID] == 1
        assert b.stats.streams_out == {BULK_PROTOCOL_ID: 2}
        assert a.stats.streams_in[BULK_PROTOCOL_ID] == 2
        assert b.stats.payload_bytes_sent == 100_000 + 3011  # upload + echoes
        assert b.stats.payload_bytes_received == 50_000 + 3011
        assert a.stats.payload_bytes_received == 100_000 + 3011
        assert a.stats.payload_bytes_sent == 3011 + 50_000
        # No session stream stays open once the sessions are over (gossipsub's do: a
        # pubsub stream lives as long as its connection).
        def session_streams() -> list[object]:
            return [
                s
                for c in a.host.get_network().get_connections()
                for s in c.get_streams()
                if s.get_protocol() not in GOSSIPSUB_PROTOCOLS
            ]

        with trio.fail_after(5):
            while session_streams():
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


def test_record_validator_prefers_highest_sequence() -> None:
    v = DemoRecordValidator()
    v.validate("/demo/k", b"12:hello")
    with pytest.raises(ValueError):
        v.validate("/demo/k", b"no sequence")
    with pytest.raises(ValueError):
        v.validate("/demo/k", b"1:" + b"x" * 2000)
    assert v.select("/demo/k", [b"3:a", b"junk", b"10:b", b"9:c"]) == 2


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_quiet_filter_demotes_only_known_benign_warnings() -> None:
    logger = logging.getLogger("libp2p.kad_dht.kad_dht")
    handler = _ListHandler()
    logger.addHandler(handler)  # py-libp2p's loggers do not propagate to the root
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with quiet_libp2p_warnings():
            logger.warning("Failed to read DHT message from stream: ")
            logger.warning("something else")
        logger.warning("Failed to read DHT message from stream: after")
        logger.setLevel(logging.WARNING)
        with quiet_libp2p_warnings():  # demoted below the level: dropped
            logger.warning("Failed to read DHT message from stream: dropped")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [(r.levelname, r.getMessage()) for r in handler.records] == [
        ("DEBUG", "Failed to read DHT message from stream: "),
        ("WARNING", "something else"),
        ("WARNING", "Failed to read DHT message from stream: after"),
    ]


async def test_the_latency_shown_is_the_demo_pings() -> None:
    """The observed node's connection latency is what its pings measure (recorded in the
    peerstore, as py-libp2p's health monitor records its own), not the yamux muxer's one
    sample taken 0.5 s after the connection started, which then held for 30 s at a time."""
    from libp2p_introspection.introspector import HostIntrospector

    intros: list[HostIntrospector] = []
    opts = replace(IDLE, on_observed_ready=lambda node: intros.append(HostIntrospector(node.host)))
    net = DemoNetwork(opts)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            await nursery.start(net.run)
            a, b = net.nodes
            store = a.host.get_peerstore()
            await ping_session(a.host, b.peer_id, 3, 0.01, a.stats)
            measured = store.latency_EWMA(b.peer_id)
            assert measured > 0
            (conn,) = [c for c in intros[0].state().subsystems.connections
                       if c.peer_id == b.peer_id.to_base58()]  # fmt: skip
            assert conn.latency_ns == int(measured * 1e9)
            store.record_latency(b.peer_id, 10.0)  # a slow ping: the next snapshot shows it
            (conn,) = [c for c in intros[0].state().subsystems.connections
                       if c.peer_id == b.peer_id.to_base58()]  # fmt: skip
            assert conn.latency_ns == int(store.latency_EWMA(b.peer_id) * 1e9) > measured * 1e9
        intros[0].detach()
        nursery.cancel_scope.cancel()
