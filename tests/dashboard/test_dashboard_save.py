"""Save recording: the dashboard's retained window as a recording file (dashboard/save.py).

What is written is read back by the project's own strict reader (every checksum
verified), by ``inspect`` and by the dashboard's own upload, with the same
snapshots and events; the route streams it, to the dashboard's own page only.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from test_dashboard_app import http, wait_for

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.convert_events import event_to_json, runtime_to_json
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.recording import load_recording
from libp2p_introspection.dashboard.save import (
    CHUNK_BYTES,
    file_name,
    ordered,
    recording_chunks,
    runtime_record,
    server_message,
)
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingReader, RecordingWriter

CLI = [sys.executable, "-m", "libp2p_introspection"]
START_MS = 1_700_000_000_000


def saved(store: Store) -> bytes:
    """The file Save recording writes for ``store``."""
    return b"".join(recording_chunks(runtime_record(store), ordered(*store.window())))


def strict_records(data: bytes) -> list[pb.ServerMessage]:
    """Every record, through the reader that raises on any bad checksum or cut record."""
    with RecordingReader(io.BytesIO(data), errors="raise") as reader:
        messages = list(reader.messages())
        assert reader.checksum_failures == 0 and not reader.truncated
    return messages


def event_texts(store: Store) -> list[str]:
    """The stored events' JSON, without the number the store gave them."""
    return [json.dumps({**e.data, "seq": 0}) for e in store.stored_events()]


def test_a_saved_recording_reads_back_byte_for_byte_and_as_the_same_snapshots(
    fixtures_dir: Path, tmp_path: Path
):
    source = fixtures_dir / "sample-1min.mock"
    store, info = load_recording(source)
    data = saved(store)
    original = [r.data for r in RecordingReader(source)]
    messages = strict_records(data)
    # The runtime first, then every state and event the file held, as they were (the
    # one command response of the file is not something the dashboard keeps).
    assert messages[0].WhichOneof("payload") == "runtime"
    kept = [
        m for m in original if pb.ServerMessage.FromString(m).WhichOneof("payload") != "response"
    ]
    assert [m.SerializeToString() for m in messages] == [
        pb.ServerMessage.FromString(m).SerializeToString() for m in kept
    ]
    again, again_info = load_recording(io.BytesIO(data), name="saved.mock")
    assert (again_info.states, again_info.events) == (info.states, info.events) == (30, 937)
    assert [s.text for s in again.snapshots()] == [s.text for s in store.snapshots()]
    assert event_texts(again) == event_texts(store)
    assert again.runtime == store.runtime

    # inspect reads it as a sound file with the same counts.
    path = tmp_path / "saved.mock"
    path.write_bytes(data)
    result = subprocess.run([*CLI, "inspect", "--json", str(path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kinds"] == {"runtime": 1, "state": 30, "event": 937, "response": 0, "notice": 0}
    assert summary["checksum_failures"] == 0 and summary["truncated"] is False
    assert summary["runtime"]["peer_id"] == store.runtime["peerId"]


def _state(i: int) -> pb.State:
    ts = START_MS + i * 1000
    state = pb.State(instant_ts=ts, start_ts=ts - 1000, snapshot_duration_ms=1000)
    conn = state.subsystems.connections.add(id=bytes([i % 3 + 1]) * 4, peer_id=f"peer-{i % 3}",
                                            status=pb.ACTIVE)  # fmt: skip
    conn.traffic.traffic_in.cum_bytes = 100 * i
    return state


def _event(i: int, name: str = "Tick", declared: bool = False) -> pb.Event:
    event = pb.Event(type=pb.EventType(name=name), ts=START_MS + i * 1000 + 500,
                     content=json.dumps({"n": i}))  # fmt: skip
    if declared:
        event.type.property_types.add(name="n", type=pb.EventType.EventProperty.NUMBER)
    return event


def test_a_live_window_is_saved_as_kept_in_the_order_it_came():
    # A live store that keeps 5 s: the file holds the kept snapshots and events only,
    # each event between the snapshots it arrived between.
    model = DashboardModel(Store(retention_ms=5_000))
    runtime = pb.Runtime(implementation="py-libp2p", version="0.8.1", platform="linux",
                         peer_id="12D3KooWSaveSaveSaveSaveSaveSaveSaveSaveSaveSave")  # fmt: skip
    model.feed_runtime(runtime)
    # "Late" is declared by its first event only (not by the runtime), and that event is
    # dropped from the window before the save: the saved runtime declares it instead.
    model.feed_event(_event(0, "Late", declared=True))
    arrived: list[tuple[str, int]] = []
    for i in range(12):
        model.feed_state(_state(i))
        arrived.append(("state", START_MS + i * 1000))
        for k in range(2):
            model.feed_event(_event(i, "Tick" if k == 0 else "Late"))
            arrived.append(("event", START_MS + i * 1000 + 500))
    store = model.store
    assert len(store) == 6 and store.event_count == 12  # the bounds dropped the rest

    messages = strict_records(saved(store))
    assert messages[0].runtime.peer_id == runtime.peer_id
    declared = {t.name: t for t in messages[0].runtime.event_types}
    assert [p.name for p in declared["Late"].property_types] == ["n"]
    order = [(m.WhichOneof("payload"), m.state.instant_ts or m.event.ts) for m in messages[1:]]
    kept = [(kind, ts) for kind, ts in arrived if ts >= store.oldest_ts]
    assert order == kept
    # Every record carries the protocol version, as a server sends it and a recorder keeps it.
    assert {m.version.version for m in messages} == {1}

    again, info = load_recording(io.BytesIO(saved(store)))
    assert (info.states, info.events) == (6, 12)
    assert again.timeline() == store.timeline()
    assert event_texts(again) == event_texts(store)
    assert again.event_types["Late"] == store.event_types["Late"]


def test_the_raw_bytes_count_against_the_stores_bounds():
    # A node's 1 MB string is cut to 1 KiB in the page's JSON; the bytes kept for saving
    # are the whole 1 MB, and they are what the byte bound holds back.
    store = Store(retention_ms=None, max_bytes=3 * 1024 * 1024)
    model = DashboardModel(store)
    for i in range(6):
        state = _state(i)
        state.subsystems.connections[0].peer_id = "x" * (1024 * 1024)
        model.feed_state(state)
    assert len(store) == 2
    described = store.describe()
    assert described["rawBytes"] == sum(len(s.raw) for s in store.snapshots())
    assert described["bytes"] + described["rawBytes"] <= 3 * 1024 * 1024
    assert all(len(s.raw) > 1024 * 1024 for s in store.snapshots())


def test_a_huge_window_is_written_in_bounded_chunks():
    # No chunk holds more than about CHUNK_BYTES plus one record: the file is never whole.
    records = [server_message("state", _state(i).SerializeToString()) for i in range(3)]
    big = server_message("event", pb.Event(content="y" * (CHUNK_BYTES // 3)).SerializeToString())
    stream = [*records, *([big] * 40)]
    chunks = list(recording_chunks(None, iter(stream)))
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) <= CHUNK_BYTES + len(big) + 8
    data = b"".join(chunks)
    assert [m.SerializeToString() for m in strict_records(data)] == stream


def test_the_file_name_says_node_and_time_and_never_carries_the_nodes_markup():
    store = Store(retention_ms=None)
    store.set_runtime(runtime_to_json(pb.Runtime(peer_id="12D3KooWAbCdEfGhIjKlMnOpQrStUv")))
    for i in (0, 125):
        store.add_snapshot({"ts": START_MS + i * 1000, "start": 0, "dur": 0, "traffic": {
            "in": 0, "out": 0, "inPkts": 0, "outPkts": 0, "bwIn": 0, "bwOut": 0},
            "conns": [], "dht": None})  # fmt: skip
    snapshots, _ = store.window()
    assert file_name(store, snapshots) == "12D3KooW-QrStUv_20231114T221320Z_125s.mock"
    store.set_runtime(runtime_to_json(pb.Runtime(peer_id='<b x="1">/../"evil";')))
    assert file_name(store, snapshots) == "bx1evil_20231114T221320Z_125s.mock"


def test_a_store_without_the_original_bytes_saves_a_runtime_built_from_what_it_shows():
    store = Store()
    runtime = pb.Runtime(implementation="impl", version="1", platform="p", peer_id="peer")
    runtime.event_types.add(name="A").property_types.add(name="x", type=pb.EventType.EventProperty.STRING,
                                                         has_multiple=True)  # fmt: skip
    store.set_runtime(runtime_to_json(runtime))
    store.add_event(event_to_json(_event(1)))
    message = pb.ServerMessage.FromString(runtime_record(store))
    assert message.runtime == runtime and message.version.version == 1


# ---------------------------------------------------------------- the route


@pytest.fixture
async def dashboard(tmp_path: Path, nursery):
    """A dashboard showing a recording of 4 snapshots of a node and 4 events."""
    path = tmp_path / "node.mock"
    with RecordingWriter(path) as writer:
        writer.write_message(
            pb.ServerMessage(runtime=pb.Runtime(peer_id="12D3KooWRouteRouteRouteRoute"))
        )
        for i in range(4):
            writer.write_message(pb.ServerMessage(state=_state(i)))
            writer.write_message(pb.ServerMessage(event=_event(i)))
    yield path, await nursery.start(Dashboard(DashboardConfig(file=str(path), port=0)).run)


async def test_the_route_downloads_the_recording_shown(dashboard):
    path, shown = dashboard
    status, body = await http(shown.url + "api/recording/save")
    assert status == 200
    assert body == path.read_bytes()  # every record as the file had it, in its order


async def test_the_route_answers_the_dashboards_own_page_only(dashboard):
    _, shown = dashboard
    url = shown.url + "api/recording/save"
    own = shown.url.rstrip("/")
    assert (await http(url, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"}))[0] == 200
    typed = {"Sec-Fetch-Site": "none"}  # the URL typed in the address bar
    assert (await http(url, headers=typed))[0] == 200
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},  # a no-cors fetch or a link on another site
        {"Sec-Fetch-Site": "same-site"},  # another local port
        {"Origin": "http://localhost:1234"},  # a loopback page may read /api/status, not this
        {"Origin": "https://evil.example"},
        {"Host": "evil.example:8846"},  # DNS rebinding
    ):
        status, body = await http(url, headers=headers)
        assert status == 403, (headers, status)
        assert b"\x01\x00\x00\x00" not in (body if isinstance(body, bytes) else b""), headers


async def test_one_download_at_a_time_and_a_client_that_leaves_frees_it(tmp_path: Path, nursery):
    # 32 snapshots of 1 MB each: far more than loopback's socket buffers take (a few MB
    # each way at most), so a client that reads nothing holds its download open.
    path = tmp_path / "big.mock"
    with RecordingWriter(path, flush=False) as writer:
        for i in range(32):
            state = _state(i)
            state.subsystems.connections[0].peer_id = chr(ord("A") + i) * (1024 * 1024)
            writer.write_message(pb.ServerMessage(state=state))
    shown = await nursery.start(Dashboard(DashboardConfig(file=str(path), port=0)).run)
    port = int(shown.url.rstrip("/").rsplit(":", 1)[1])
    request = f"GET /api/recording/save HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(4096)
        assert head.startswith(b"HTTP/1.1 200")
        # (The file has no runtime: the name says "node".)
        assert b'content-disposition: attachment; filename="node_20231114T221320Z_31s.mock"' in head
        status, body = await http(shown.url + "api/recording/save")
        assert status == 409 and "being saved" in body["error"]
        # The client leaves without reading the rest (a reset, as a closed tab's):
        # the next download is answered.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

        async def answered() -> bool:
            status, body = await http(shown.url + "api/recording/save")
            return status == 200 and body == path.read_bytes()

        await wait_for(answered, timeout=20, what="a download after the client that left")


async def test_nothing_to_save_before_the_first_snapshot(nursery):
    shown = await nursery.start(
        Dashboard(DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0)).run
    )
    status, body = await http(shown.url + "api/recording/save")
    assert status == 404 and "no snapshot" in body["error"]
