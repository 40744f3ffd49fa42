"""Long strings from a server or a file: each costs the dashboard its cap, not its length.

A 60 MB peer id of U+0000 (within the 64 MiB message limit and every
expansion limit) once cost the dashboard about 100 times its size: JSON
writes each NUL as ``\\u0000`` (6 characters), connections carried after
they vanished repeated it, and the page's tab crashed on a 1 GB snapshot.
Now every string the converter emits is capped with a visible marker, and a
snapshot whose JSON would pass the budget is skipped with a notice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
import trio
from hostile_records import START_MS, normal_state, runtime, write

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.caps import MAX_PEER_ID, MAX_TEXT, dumps
from libp2p_introspection.dashboard.convert import SnapshotConverter, SnapshotTooLarge
from libp2p_introspection.dashboard.convert_events import (
    MAX_EVENT_CONTENT,
    MAX_EVENT_TYPES,
    MAX_NAME,
    MAX_PROPERTY_TYPES,
    event_to_json,
    runtime_to_json,
)
from libp2p_introspection.dashboard.convert_swarm import MAX_ID_BYTES
from libp2p_introspection.dashboard.feed import LiveFeed
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.recording import load_recording
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol import pb

LONG = 100_000  # characters (or bytes) of every long field below


def _cut(text: str, cap: int) -> str:
    return text[:cap] + f"…(+{len(text) - cap} chars)"


def _hostile_state(instant_ts: int = START_MS, *, conns: int = 1, char: str = "\x00") -> pb.State:
    """Connections whose every string and id is ``LONG`` long (control characters:
    the JSON escapes each as 6 characters), each with a stream, and a DHT peer."""
    state = pb.State(instant_ts=instant_ts)
    for n in range(conns):
        conn = state.subsystems.connections.add()
        conn.id = n.to_bytes(4, "big") * (LONG // 4)
        conn.peer_id = char * LONG
        conn.endpoints.src_multiaddr = conn.endpoints.dst_multiaddr = char * LONG
        conn.transport_id = b"\x00" * LONG
        conn.attribs.multiplexer = conn.attribs.encryption = char * LONG
        conn.conn_id = b"\x01" * LONG
        conn.user_provided_tags.append(char * LONG)
        stream = conn.streams.streams.add(id=b"\x02" * LONG, protocol=char * LONG)
        stream.timeline.open_ts = instant_ts
    dht = state.subsystems.dht
    dht.protocol = char * LONG
    dht.buckets.add().peers.add(peer_id=char * LONG)
    return state


def test_every_string_of_a_snapshot_is_capped_with_a_visible_cut():
    data = SnapshotConverter().convert(_hostile_state())
    (conn,) = data["conns"]
    long = "\x00" * LONG
    assert conn["peer"] == _cut(long, MAX_PEER_ID)
    for key in ("src", "dst", "mux", "sec"):
        assert conn[key] == _cut(long, MAX_TEXT), key
    assert conn["tags"] == [_cut(long, MAX_TEXT)]
    assert conn["transport"] == "00" * MAX_TEXT + f"…(+{LONG - MAX_TEXT} bytes)"
    assert conn["id"] == "00000000" * (MAX_ID_BYTES // 4) + f"…(+{LONG - MAX_ID_BYTES} bytes)"
    assert conn["relayedOver"] == "01" * MAX_ID_BYTES + f"…(+{LONG - MAX_ID_BYTES} bytes)"
    (stream,) = conn["streams"]
    assert stream["proto"] == _cut(long, MAX_TEXT)
    assert stream["id"] == "02" * MAX_ID_BYTES + f"…(+{LONG - MAX_ID_BYTES} bytes)"
    assert data["dht"]["protocol"] == _cut(long, MAX_TEXT)
    assert data["dht"]["buckets"][0]["peers"][0]["peer"] == _cut(long, MAX_PEER_ID)
    assert len(dumps(data)) < 60_000  # main: 6 MB of "\u0000" for these 0.9 MB of strings


def test_runtime_and_event_strings_are_capped():
    runtime_msg = pb.Runtime(implementation="x" * LONG, version="v" * LONG, platform="p" * LONG,
                             peer_id="Q" * LONG)  # fmt: skip
    event_type = runtime_msg.event_types.add(name="T" * LONG)
    event_type.property_types.add(name="n" * LONG)
    data = runtime_to_json(runtime_msg)
    assert data["implementation"] == _cut("x" * LONG, MAX_TEXT)
    assert data["peerId"] == _cut("Q" * LONG, MAX_PEER_ID)
    assert data["eventTypes"][0]["name"] == _cut("T" * LONG, MAX_NAME)
    assert data["eventTypes"][0]["properties"][0]["name"] == _cut("n" * LONG, MAX_NAME)
    event = pb.Event(ts=START_MS, content="\x00" * (2 * MAX_EVENT_CONTENT))
    event.type.name = "E" * LONG
    converted = event_to_json(event)
    assert converted["content"] == _cut("\x00" * (2 * MAX_EVENT_CONTENT), MAX_EVENT_CONTENT)
    assert converted["type"] == _cut("E" * LONG, MAX_NAME)


def test_a_short_string_is_not_touched():
    state = normal_state_message()
    data = SnapshotConverter().convert(state)
    assert data["conns"][0]["peer"] == "12D3KooWshort"
    assert "…" not in dumps(data)


def normal_state_message() -> pb.State:
    message = pb.ServerMessage()
    message.ParseFromString(normal_state(START_MS))
    message.state.subsystems.connections[0].peer_id = "12D3KooWshort"
    return message.state


@pytest.mark.parametrize("char", ["\x00", 'é"\\\u2028', "a"])
def test_the_budget_is_exact_and_counts_carried_connections(char):
    first, second = _hostile_state(START_MS, conns=20, char=char), _hostile_state(START_MS + 1_000)
    for n, conn in enumerate(second.subsystems.connections):
        conn.id = b"new" + bytes([n])  # the 20 of the first vanish: carried as closed
    sizes = []
    for budget in (None, "exact", "one less"):
        converter = SnapshotConverter()
        converter.convert(first)
        if budget is None:
            sizes.append(len(dumps(converter.convert(second))))
            continue
        converter.max_snapshot_bytes = sizes[0] - (budget == "one less")
        if budget == "exact":
            data = converter.convert(second)
            assert len(dumps(data)) == sizes[0] and len(data["conns"]) == 21
        else:
            with pytest.raises(SnapshotTooLarge, match="20 closed ones carried"):
                converter.convert(second)
            # The converter is as before: the next snapshot still carries the first's 20.
            converter.max_snapshot_bytes = sizes[0]
            assert len(converter.convert(second)["conns"]) == 21


def test_an_over_budget_snapshot_is_skipped_with_a_notice_in_a_recording(tmp_path):
    path = tmp_path / "big.mock"
    big = pb.ServerMessage()
    big.version.version = 1
    big.state.CopyFrom(_hostile_state(START_MS + 1_000, conns=20))
    write(path, [runtime(), normal_state(START_MS), big.SerializeToString(),
                 normal_state(START_MS + 2_000)])  # fmt: skip
    store, info = load_recording(path, max_snapshot_bytes=200_000)
    assert store.timeline() == [START_MS, START_MS + 2_000]
    assert info.over_limit == 1
    assert "record 3: a snapshot of 20 connections" in info.over_limit_reason
    model = DashboardModel(Store())
    model.show_recording(store, info)
    notice = model.status()["overLimit"]
    assert notice["count"] == 1 and "200,000 characters of JSON" in notice["reason"]


def test_an_over_budget_live_snapshot_is_skipped_with_a_notice():
    model = DashboardModel(Store(), max_snapshot_bytes=200_000)
    model.attach_feed(LiveFeed("ws://127.0.0.1:9/introspect", model))
    model.feed_state(_hostile_state(START_MS, conns=1))
    model.feed_state(_hostile_state(START_MS + 1_000, conns=200))
    assert model.store.timeline() == [START_MS]
    notice = model.status()["overLimit"]
    assert notice["count"] == 1
    assert "more than 200,000 characters of JSON" in notice["reason"]


def test_event_types_from_events_are_bounded():
    store = Store()
    for n in range(MAX_EVENT_TYPES + 10):
        event_type = {"name": f"T{n}", "properties": [{"name": "p", "type": "STRING",
                                                       "multiple": False}]}  # fmt: skip
        store.add_event({"seq": 0, "ts": START_MS, "type": f"T{n}", "content": {}}, event_type)
    assert len(store.event_types) == MAX_EVENT_TYPES
    many = {"name": "Many", "properties": [{"name": str(n), "type": "STRING", "multiple": False}
                                           for n in range(MAX_PROPERTY_TYPES)]}  # fmt: skip
    store.clear()
    store.add_event({"seq": 0, "ts": START_MS, "type": "Many", "content": {}}, many)
    store.add_event({"seq": 0, "ts": START_MS, "type": "One", "content": {}},
                    {"name": "One", "properties": many["properties"][:1]})  # fmt: skip
    assert list(store.event_types) == ["Many"]
    assert store.event_count == 2  # the events themselves are kept


BIG_PEER_ID = 20_000_000  # characters of U+0000 in each of three snapshots: a 60 MB file


@pytest.fixture(scope="module")
def bigstring(tmp_path_factory) -> Path:
    """The review's file, a third the size: 3 snapshots, each one connection whose
    peer id is 20 MB of U+0000 (and a new id, so the earlier ones are carried)."""
    path = tmp_path_factory.mktemp("bigstring") / "bigstring.mock"
    records = [runtime()]
    for k in range(3):
        message = pb.ServerMessage()
        message.version.version = 1
        message.state.instant_ts = START_MS + 1_000 * k
        conn = message.state.subsystems.connections.add(id=bytes([k + 1]))
        conn.peer_id = "\x00" * BIG_PEER_ID
        records.append(message.SerializeToString())
        del message, conn
    return write(path, records)


def test_a_file_of_long_strings_loads_in_bounded_memory(bigstring):
    # In a child, which reads its own peak RSS: on main this load peaked 1.1 GB above
    # the child's start (each snapshot's text 120 MB and more, carried copies included).
    code = textwrap.dedent(f"""
        import resource
        from libp2p_introspection.dashboard.recording import load_recording
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        store, info = load_recording({str(bigstring)!r})
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(info.states, store.describe()["bytes"], peak - base)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    states, text_bytes, growth_kib = map(int, out)
    assert states == 3
    assert text_bytes < 20_000  # 6 capped connections in 3 snapshots (main: 360 MB)
    # What one record costs while it is read, parsed and its string read once: under
    # 4 times its bytes (measured: about 3).
    assert growth_kib * 1024 < 4 * BIG_PEER_ID


async def test_the_page_is_sent_a_snapshot_of_capped_strings(bigstring):
    config = DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0, file=str(bigstring))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)

            def get(path: str) -> bytes:
                with urllib.request.urlopen(dashboard.url + path, timeout=30) as response:
                    return response.read()

            text = await trio.to_thread.run_sync(get, "api/snapshot")
            nursery.cancel_scope.cancel()
    assert len(text) < 10_000  # main: 360 MB (3 connections, 2 of them carried, 6x each)
    conns = json.loads(text)["conns"]
    assert [c["peer"] for c in conns] == [_cut("\x00" * BIG_PEER_ID, MAX_PEER_ID)] * 3
