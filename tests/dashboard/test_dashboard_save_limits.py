"""Save recording's bounds (dashboard/save.py, dashboard/serving.py): what a client can
hold and for how long, and what it can tell.

- A finished answer leaves no connection behind: the server closes an idle
  keep-alive connection within its keep-alive timeout, and at once after
  ``Connection: close`` (the download, the page and its scripts alike).
- A download has a deadline from its size (a fake clock here) and a
  ``Content-Length``, so one cut short is a short body the client notices.
- ``HEAD`` answers the headers without writing the file or taking the slot.
- The saved Runtime declares event types under the names the node sent.

Real sockets on loopback; every wait bounded, no timing asserted.
"""

from __future__ import annotations

import http.client
import io
import json
import os
from pathlib import Path

import pytest
import trio
from starlette.applications import Starlette
from starlette.routing import Route

from libp2p_introspection.dashboard import Dashboard, DashboardConfig, save
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.recording import load_recording
from libp2p_introspection.dashboard.save import ordered, recording_chunks, runtime_record
from libp2p_introspection.dashboard.serving import serve_asgi
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingReader, RecordingWriter

START_MS = 1_700_000_000_000
#: Generous bound on the server closing a connection (its keep-alive timeout is 5 s).
CLOSE_BOUND_S = 30


def _state(i: int, peer_bytes: int = 8) -> pb.State:
    ts = START_MS + i * 1000
    state = pb.State(instant_ts=ts, start_ts=ts - 1000, snapshot_duration_ms=1000)
    state.subsystems.connections.add(id=bytes([i % 250 + 1]) * 4,
                                     peer_id=chr(ord("A") + i % 26) * peer_bytes,
                                     status=pb.ACTIVE)  # fmt: skip
    return state


def _write(path: Path, states: int, peer_bytes: int = 8) -> Path:
    with RecordingWriter(path, flush=False) as writer:
        writer.write_message(pb.ServerMessage(runtime=pb.Runtime(peer_id="12D3KooWLimits")))
        for i in range(states):
            writer.write_message(pb.ServerMessage(state=_state(i, peer_bytes)))
    return path


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


async def _answer(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer's head and whole body (Content-Length or chunked)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = await stream.receive_some(65536)
        assert more, "closed before the answer's head"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            more = await stream.receive_some(1 << 20)
            assert more, "closed before the whole body"
            body += more
        return head, body
    while not body.endswith(b"0\r\n\r\n"):  # chunked: read to the last chunk
        more = await stream.receive_some(1 << 20)
        assert more, "closed before the last chunk"
        body += more
    return head, body


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    """Whether the server closes ``stream`` (EOF) within :data:`CLOSE_BOUND_S`."""
    with trio.move_on_after(CLOSE_BOUND_S):
        while True:
            try:
                if not await stream.receive_some(65536):
                    return True
            except trio.BrokenResourceError:
                return True
    return False


def _request(path: str, port: int, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode()


@pytest.fixture
async def shown(tmp_path: Path, nursery):
    """A dashboard showing a small recording (6 snapshots)."""
    path = _write(tmp_path / "small.mock", 6)
    dashboard = await nursery.start(Dashboard(DashboardConfig(file=str(path), port=0)).run)
    return path, dashboard


@pytest.mark.parametrize("path", ["/api/recording/save", "/", "/static/js/app.js"])
async def test_a_finished_answer_leaves_its_idle_connection_to_the_keep_alive_timeout(
    shown, path: str
):
    # The download, and the page's files (Starlette's FileResponse cancels its own sends
    # the same way): after the answer, the idle keep-alive connection is closed.
    file, dashboard = shown
    port = _port(dashboard.url)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(_request(path, port))
        with trio.fail_after(CLOSE_BOUND_S):
            head, body = await _answer(stream)
        assert head.startswith(b"HTTP/1.1 200")
        if path == "/api/recording/save":
            assert body == file.read_bytes()
        assert await _closed_by_server(stream), f"{path}: the idle connection stayed open"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_downloads_on_connections_the_client_keeps_open_leave_no_descriptors(shown):
    # A local process that never closes its end: each download's connection is closed
    # by the server (Connection: close), so N downloads do not pin N descriptors.
    file, dashboard = shown
    port = _port(dashboard.url)
    count = 12
    before = _open_fds()
    clients = []
    try:
        for _ in range(count):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            clients.append(stream)
            await stream.send_all(_request("/api/recording/save", port, "Connection: close\r\n"))
            with trio.fail_after(CLOSE_BOUND_S):
                head, body = await _answer(stream)
            assert head.startswith(b"HTTP/1.1 200") and body == file.read_bytes()
        for stream in clients:
            assert await _closed_by_server(stream), "a finished download stayed open"
        # Our own `count` client sockets are still open; the server's ends are not.
        assert _open_fds() - before <= count + 2
    finally:
        for stream in clients:
            await stream.aclose()


async def test_a_download_has_its_length_and_head_writes_nothing(tmp_path: Path, nursery):
    # 24 snapshots of 1 MB: a download the client does not read stays open.
    path = _write(tmp_path / "big.mock", 24, peer_bytes=1024 * 1024)
    dashboard = await nursery.start(Dashboard(DashboardConfig(file=str(path), port=0)).run)
    port = _port(dashboard.url)
    size = path.stat().st_size
    with trio.fail_after(CLOSE_BOUND_S):
        holder = await trio.open_tcp_stream("127.0.0.1", port)
        async with holder:
            await holder.send_all(_request("/api/recording/save", port))
            head = b""
            while b"\r\n\r\n" not in head:
                head += await holder.receive_some(4096)
            assert head.startswith(b"HTTP/1.1 200")
            # The length is known in advance (a download cut short is then a short body).
            assert f"content-length: {size}\r\n".encode() in head.lower()
            assert b"transfer-encoding" not in head.lower()
            # HEAD while the download runs: the same headers, no body, no 409, no file.
            probe = await trio.open_tcp_stream("127.0.0.1", port)
            async with probe:
                await probe.send_all(_request("/api/recording/save", port, method="HEAD"))
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += await probe.receive_some(4096)
                head_only, _, rest = answer.partition(b"\r\n\r\n")
                assert head_only.startswith(b"HTTP/1.1 200"), head_only
                assert f"content-length: {size}\r\n".encode() in head_only.lower() + b"\r\n"
                assert b"attachment; filename=" in head_only
                assert rest == b""


# ------------------------------------------------------------------ the deadline


class StepClock:
    """A fake clock (seconds): one second passes each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _get(port: int) -> tuple[int, dict[str, str], bytes | None, str]:
    """A download through http.client: status, headers, the body or ``None`` with what
    the client reported."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/save")
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            return response.status, headers, response.read(), ""
        except http.client.IncompleteRead as exc:
            return response.status, headers, None, f"incomplete: {len(exc.partial)} bytes"
    finally:
        conn.close()


async def test_a_download_past_its_deadline_is_cut_and_the_client_can_tell(tmp_path: Path, nursery):
    # 8 snapshots of 1 MB: 8 chunks. The deadline is 3 s of the fake clock, which reads
    # one second later at each chunk: the server stops after 3 chunks and closes.
    path = _write(tmp_path / "slow.mock", 8, peer_bytes=1024 * 1024)
    store, _ = load_recording(path)
    size = path.stat().st_size
    clock = StepClock()
    endpoint = save.save_endpoint(lambda: store, min_rate_bps=size / 3, grace_s=0.0, clock=clock)
    app = Starlette(routes=[Route("/save", endpoint)])
    port = await nursery.start(serve_asgi, app, "127.0.0.1", 0)
    status, headers, body, report = await trio.to_thread.run_sync(_get, port)
    assert status == 200 and int(headers["content-length"]) == size
    assert body is None and report.startswith("incomplete"), (report, body and len(body))
    assert not endpoint.gate.busy  # the slot is free again
    # A download within its deadline is whole.
    clock.now = -1e9
    endpoint2 = save.save_endpoint(lambda: store)
    app2 = Starlette(routes=[Route("/save", endpoint2)])
    port2 = await nursery.start(serve_asgi, app2, "127.0.0.1", 0)
    status, headers, body, report = await trio.to_thread.run_sync(_get, port2)
    assert status == 200 and body == path.read_bytes() and report == ""


def test_the_deadline_grows_with_the_size():
    assert save.download_deadline_s(0) == 30.0
    assert save.download_deadline_s(100 * 1024 * 1024) == 30.0 + 100.0  # 1 MiB/s at least
    assert save.download_deadline_s(10, min_rate_bps=5, grace_s=1) == 3.0


# ------------------------------------------------------------------ event types


def test_saved_event_types_are_the_ones_the_node_sent_not_their_shortened_names():
    # The page shows a 300-character type name shortened ("EEEE…(+44 chars)"); the file
    # declares it (and its properties) as the node sent it, once.
    long_runtime, long_event, long_prop = "R" * 300, "E" * 300, "P" * 300
    model = DashboardModel(Store(retention_ms=None, max_events=1))
    runtime = pb.Runtime(implementation="x", version="1", platform="p", peer_id="peer")
    runtime.event_types.add(name=long_runtime).property_types.add(
        name=long_prop, type=pb.EventType.EventProperty.STRING)  # fmt: skip
    model.feed_runtime(runtime)
    declared = pb.EventType(name=long_event)
    declared.property_types.add(name=long_prop, type=pb.EventType.EventProperty.NUMBER)
    model.feed_state(_state(0))
    model.feed_event(pb.Event(type=declared, ts=START_MS + 1, content=json.dumps({long_prop: 1})))
    # The event that declared it drops out of the window (max_events=1).
    model.feed_event(pb.Event(type=pb.EventType(name="Other"), ts=START_MS + 2, content="{}"))
    assert long_event[:256] + "…(+44 chars)" in model.store.event_types

    data = b"".join(recording_chunks(runtime_record(model.store), ordered(*model.store.window())))
    with RecordingReader(io.BytesIO(data), errors="raise") as reader:
        saved = next(iter(reader.messages())).runtime
    assert [t.name for t in saved.event_types] == [long_runtime, long_event]
    assert list(saved.event_types)[1] == declared
    assert [p.name for t in saved.event_types for p in t.property_types] == [long_prop] * 2
