"""The shared event vocabulary: declarations, content builders, emission, DHT query content."""

from __future__ import annotations

import json
from typing import Any

import pytest

from libp2p_introspection.protocol import dht, events, pb


def test_build_event_requires_exact_properties() -> None:
    spec = events.STREAM_OPENED
    properties = {
        "openTs": 1, "direction": "inbound", "protocol": "/p", "streamId": "02", "connId": "01",
        "peerId": "p",
    }  # fmt: skip
    event = events.build_event(spec, 42, properties)
    assert event.ts == 42 and event.type.name == "StreamOpened"
    assert list(json.loads(event.content)) == list(spec.property_names)  # declared order
    with pytest.raises(ValueError):
        events.build_event(spec, 42, {"peerId": "p"})


def test_dht_query_content_and_its_declaration() -> None:
    """The DHT query events' content (PROTOCOL.md §3) has exactly the declared keys,
    and only peerIds is a list."""
    content = dht.query_content(
        direction="OUTBOUND", peer="12D3KooWpeer", message_type="GET_PROVIDERS",
        target="12206b6579", total_time_ms=12.6, trigger="API", result="TIMEOUT",
        query_id=dht.new_query_id(),
    )  # fmt: skip
    event = events.build_event(events.OUTBOUND_DHT_QUERY, 42, content)
    decoded = json.loads(event.content)
    assert decoded["peerIds"] == ["12D3KooWpeer"] and decoded["targetPeerId"] == "12206b6579"
    assert (decoded["type"], decoded["totalTimeMs"], decoded["totalSteps"]) == ("PROVIDER", 12, 1)
    assert len(decoded["queryId"]) == 64
    multiple = {p.name for p in event.type.property_types if p.has_multiple}
    assert multiple == {"peerIds"}
    assert [dht.query_type(m) for m in ("PUT_VALUE", "ADD_PROVIDER", "PING")] == [
        "VALUE", "PROVIDER", "CONTENT"
    ]  # fmt: skip
    unknown_peer = dht.query_content(
        direction="INBOUND", peer="", message_type="UNKNOWN", target="", total_time_ms=-3,
        trigger="API", result="ERROR", query_id="00",
    )  # fmt: skip
    assert unknown_peer["peerIds"] == [] and unknown_peer["totalTimeMs"] == 0


def test_query_counts_count_outcomes_but_not_cancelled_calls() -> None:
    counts = dht.QueryCounts()
    for result in (dht.SUCCESS, dht.SUCCESS, dht.ERROR, dht.TIMEOUT, dht.CANCELLED):
        counts.count(result)
    gauge = pb.DHT.QueryGauge()
    counts.to_pb(gauge)
    assert (gauge.success, gauge.error, gauge.timeout) == (2, 1, 1)


def test_emitter_swallows_sink_errors() -> None:
    emitter = events.EventEmitter(lambda: 7, events.CONNECTION_EVENTS)
    seen: list[pb.Event] = []

    def sink(event: pb.Event) -> None:
        seen.append(event)
        raise RuntimeError("boom")

    emitter.set_sink(sink)
    emitter.emit(
        events.CONNECTION_CLOSED, {name: "x" for name in events.CONNECTION_CLOSED.property_names}
    )
    emitter.emit(events.INBOUND_DHT_QUERY, {"wrong": 1})  # bad properties: logged, not raised
    assert [(e.type.name, e.ts) for e in seen] == [("ConnectionClosed", 7)]


def test_events_before_the_first_sink_reach_it_first_and_none_after_one_is_removed() -> None:
    # A demo node is introspected from its start, but its server (the first sink) runs
    # once the network is up: its connections and identify exchanges happened by then,
    # and the metrics counted from events said 0 identify exchanges where the
    # snapshots' per-protocol totals said 4.
    now = [1]
    emitter = events.EventEmitter(lambda: now[0], events.CONNECTION_EVENTS)
    closed = {name: "x" for name in events.CONNECTION_CLOSED.property_names}
    for ts in range(1, events.FIRST_SINK_BACKLOG + 3):
        now[0] = ts
        emitter.emit(events.CONNECTION_CLOSED, closed)
    seen: list[int] = []
    emitter.set_sink(lambda event: seen.append(event.ts))
    # the newest FIRST_SINK_BACKLOG, in order, before anything emitted after
    assert seen == list(range(3, events.FIRST_SINK_BACKLOG + 3))
    emitter.emit(events.CONNECTION_CLOSED, closed, ts=10_000)
    assert seen[-1] == 10_000 and len(seen) == events.FIRST_SINK_BACKLOG + 1
    # the next sink gets only what comes after it; without one, events are dropped
    emitter.set_sink(None)
    emitter.emit(events.CONNECTION_CLOSED, closed, ts=20_000)
    later: list[int] = []
    emitter.set_sink(lambda event: later.append(event.ts))
    emitter.emit(events.CONNECTION_CLOSED, closed, ts=30_000)
    assert later == [30_000] and 20_000 not in seen


def _content(spec: events.EventSpec, content: dict[str, object]) -> dict[str, object]:
    """``content`` as a client decodes it, after build_event accepted it for ``spec``."""
    return json.loads(events.build_event(spec, 1, content).content)


def test_connection_event_builders_write_ids_roles_and_statuses_one_way() -> None:
    """Both sources build their connection and stream events here: ids in lowercase hex
    (as snapshots' ids are written), roles as outbound/inbound, statuses by name."""
    opened_args: dict[str, Any] = {
        "peer_id": "12D3KooWp", "conn_id": b"\x00\x00\x00\x00\x00\x00\x00\x0a",
        "role": pb.INITIATOR, "local_addr": "/ip4/10.0.0.1/tcp/50000",
        "remote_addr": "/ip4/3.1.2.3/tcp/4001", "transport": b"tcp",
        "multiplexer": "/yamux/1.0.0", "encryption": "/noise", "open_ts": 5,
    }  # fmt: skip
    opened = events.connection_opened(**opened_args)
    decoded = _content(events.CONNECTION_OPENED, opened)
    assert decoded["connId"] == "000000000000000a" and decoded["direction"] == "outbound"
    assert decoded["transport"] == "tcp"
    # A transport id that is not printable ASCII is written in hex, as inspect/watch write it.
    odd = events.connection_opened(**{**opened_args, "transport": b"\xfftcp"})
    assert _content(events.CONNECTION_OPENED, odd)["transport"] == "ff746370"
    closed = events.connection_closed(
        peer_id="12D3KooWp", conn_id=b"\x01", role=pb.RESPONDER, remote_addr="/ip4/3.1.2.3/tcp/9",
        open_ts=5, ending=events.Ending(9, 10, 20, pb.ERROR, "boom"),
    )  # fmt: skip
    decoded = _content(events.CONNECTION_CLOSED, closed)
    assert (decoded["direction"], decoded["status"], decoded["reason"]) == (
        "inbound", "ERROR", "boom"
    )  # fmt: skip
    assert (decoded["closeTs"], decoded["bytesIn"], decoded["bytesOut"]) == (9, 10, 20)
    stream = {"peer_id": "p", "conn_id": b"\x01", "stream_id": b"\x02", "protocol": "/x",
              "role": pb.RESPONDER, "open_ts": 5}  # fmt: skip
    decoded = _content(events.STREAM_OPENED, events.stream_opened(**stream))
    assert (decoded["connId"], decoded["streamId"], decoded["direction"]) == ("01", "02", "inbound")
    ended = events.stream_closed(**stream, ending=events.Ending(6, 1, 2, pb.CLOSED, "closed"))
    decoded = _content(events.STREAM_CLOSED, ended)
    assert (decoded["streamId"], decoded["status"], decoded["closeTs"]) == ("02", "CLOSED", 6)
    with pytest.raises(KeyError):  # an ACTIVE thing has not closed
        events.stream_closed(**stream, ending=events.Ending(6, 1, 2, pb.ACTIVE, ""))
