"""The dashboard's HTTP routes and browser feed, in-process, against a replayed recording.

HTTP goes through urllib in a worker thread and the browser feed through
trio-websocket: real sockets on loopback, every wait bounded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from test_dashboard_uploads import answer as read_answer
from test_dashboard_uploads import start_upload
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.bodies import BadRequest, normalize_url
from libp2p_introspection.dashboard.browsers import BrowserHub, Mailbox
from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.protocol import pb
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.replay import ReplaySource

SAMPLE_PEER = "8de3166db28fddb199f05be0acea65772e7a1b289086902160d1060e83dac2fd"


def _request(url: str, data: bytes | None, headers: dict[str, str], method: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
               method: str | None = None) -> tuple[int, Any]:  # fmt: skip
    status, body = await trio.to_thread.run_sync(_request, url, data, headers or {}, method)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
async def live(fixtures_dir: Path, nursery):
    """A replay server (a snapshot every 50 ms) and a dashboard following it."""
    source = ReplaySource(fixtures_dir / "sample-1min.mock", speed=40, loop=True)
    server = await nursery.start(IntrospectionServer(source, ServerConfig(port=0)).run)
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=server.url, port=0)).run)
    yield server, dashboard


def test_normalize_url():
    assert normalize_url("127.0.0.1:9000") == "ws://127.0.0.1:9000/introspect"
    assert normalize_url("localhost") == "ws://localhost:8845/introspect"
    assert normalize_url("ws://[::1]:1/introspect?token=x") == "ws://[::1]:1/introspect?token=x"
    for bad in ("", "http://127.0.0.1:1/", "ws://:1/", "ws://h:99999/"):
        with pytest.raises(BadRequest):
            normalize_url(bad)


async def test_status_snapshot_and_page(live):
    server, dashboard = live

    async def connected() -> bool:
        _, status = await http(dashboard.url + "api/status")
        return status["connection"] == "connected" and status["store"]["snapshots"] >= 3

    await wait_for(connected, what="the dashboard to follow the server")
    status, body = await http(dashboard.url + "api/status")
    assert body["mode"] == "live" and body["url"] == server.url and body["paused"] is False
    status, snapshot = await http(dashboard.url + "api/snapshot")
    assert status == 200 and snapshot["conns"] and snapshot["ts"] > 0
    first = dashboard.model.store.timeline()[0]
    status, older = await http(dashboard.url + f"api/snapshot?ts={first}")
    assert older["ts"] == first
    assert (await http(dashboard.url + "api/snapshot?ts=x"))[0] == 400
    conn_id = snapshot["conns"][0]["id"]
    status, series = await http(dashboard.url + f"api/connection-series?id={conn_id}")
    assert status == 200 and series and {"ts", "bwIn", "bwOut"} <= set(series[0])
    status, page = await http(dashboard.url)
    assert status == 200 and b"libp2p introspection" in page
    for path in ("static/js/app.js", "static/vendor/tabulator/tabulator.min.js",
                 "static/vendor/uplot/uPlot.iife.min.js"):  # fmt: skip
        assert (await http(dashboard.url + path))[0] == 200, path


async def test_the_events_route_answers_stored_events_filtered(live):
    _, dashboard = live

    async def some_events() -> bool:
        return (await http(dashboard.url + "api/status"))[1]["store"]["events"] >= 3

    await wait_for(some_events, what="events")
    status, events = await http(dashboard.url + "api/events?limit=3")
    assert status == 200 and len(events) == 3
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all({"seq", "ts", "type", "content"} <= set(e) for e in events)
    kind = events[-1]["type"]
    status, same = await http(dashboard.url + f"api/events?type={kind}&until={events[-1]['ts']}")
    assert same and {e["type"] for e in same} == {kind}
    assert all(e["ts"] <= events[-1]["ts"] for e in same)
    assert (await http(dashboard.url + "api/events?limit=x"))[0] == 400


async def test_pause_resume_and_connect_commands(live):
    server, dashboard = live
    status, answer = await http(dashboard.url + "api/pause", b"", method="POST")
    assert status == 200 and answer["status"]["paused"] is True
    for _ in range(200):  # the snapshot asked for before the pause comes, then none is awaited
        if not (await http(dashboard.url + "api/status"))[1]["awaitingState"]:
            break
        await trio.sleep(0.05)
    else:
        raise AssertionError("a paused feed still awaits a snapshot after 10 s")
    status, answer = await http(dashboard.url + "api/resume", b"", method="POST")
    assert answer["status"]["paused"] is False
    status, answer = await http(dashboard.url + "api/connect", b'{"url": "http://nope"}',
                                {"Content-Type": "application/json"}, "POST")  # fmt: skip
    assert status == 400 and "WebSocket URL" in answer["error"]
    status, answer = await http(dashboard.url + "api/connect", json.dumps({"url": server.url}).encode(),
                                {"Content-Type": "application/json"}, "POST")  # fmt: skip
    assert status == 200 and answer["status"]["url"] == server.url


async def test_upload_a_recording_then_go_back_to_live(live, fixtures_dir: Path):
    server, dashboard = live
    status, answer = await http(dashboard.url + "api/recording", b"not a recording at all",
                                {"X-File-Name": "junk.mock"}, "POST")  # fmt: skip
    assert status == 422 and "not a recording" in answer["error"]
    data = (fixtures_dir / "sample-1min.mock").read_bytes()
    status, answer = await http(dashboard.url + "api/recording", data,
                                {"X-File-Name": "sample-1min.mock"}, "POST")  # fmt: skip
    assert status == 200, answer
    st = answer["status"]
    assert st["mode"] == "recording" and st["connection"] == "disconnected"
    assert st["recording"]["name"] == "sample-1min.mock" and st["recording"]["states"] == 30
    status, snapshot = await http(dashboard.url + "api/snapshot")
    assert len(snapshot["conns"]) == 10
    assert sum(len(c["streams"]) for c in snapshot["conns"]) == 96
    assert (await http(dashboard.url + "api/pause", b"", method="POST"))[0] == 409
    status, answer = await http(dashboard.url + "api/connect", json.dumps({"url": server.url}).encode(),
                                {"Content-Type": "application/json"}, "POST")  # fmt: skip
    assert answer["status"]["mode"] == "live"

    async def connected() -> bool:
        return (await http(dashboard.url + "api/status"))[1]["connection"] == "connected"

    await wait_for(connected, what="live again")


async def test_upload_size_is_bounded(fixtures_dir: Path, nursery):
    dashboard = await nursery.start(
        Dashboard(DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0, max_upload_bytes=1000)).run
    )
    size = (fixtures_dir / "sample-1min.mock").stat().st_size
    # Refused from its Content-Length, before any of its body is read: the body is not
    # sent here, so the answer must come without it. (urllib, which sends all 1.8 MB
    # before it reads an answer, met the closed connection mid-body: a broken pipe.)
    port = int(dashboard.url.rstrip("/").rsplit(":", 1)[1])
    with trio.fail_after(10):
        stream = await start_upload(port, size, 0)
        async with stream:
            status, answer, closed = await read_answer(stream)
    assert status == 413 and "1000-byte limit" in answer["error"]
    assert closed  # the connection goes: the rest of the body is never read


async def test_foreign_origins_and_hosts_are_refused(live):
    _, dashboard = live
    assert (await http(dashboard.url + "api/status", headers={"Origin": "https://evil.example"}))[0] == 403
    assert (await http(dashboard.url + "api/status", headers={"Host": "evil.example:8846"}))[0] == 403
    own = dashboard.url.rstrip("/")
    assert (await http(dashboard.url + "api/status", headers={"Origin": own}))[0] == 200
    assert (await http(dashboard.url + "api/status", headers={"Origin": "http://localhost:1234"}))[0] == 200
    ws_url = dashboard.url.replace("http://", "ws://") + "feed"
    with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(ws_url, extra_headers=[(b"Origin", b"https://evil.example")]):
            pass
    assert rejected.value.status_code == 403


async def test_browser_feed_sends_hello_then_snapshots_and_events(live):
    _, dashboard = live
    ws_url = dashboard.url.replace("http://", "ws://") + "feed"
    with trio.fail_after(15):
        async with open_websocket_url(ws_url, max_message_size=64 * 1024 * 1024) as ws:
            batch = json.loads(await ws.get_message())
            hello = batch[0]
            assert hello["t"] == "hello"
            assert hello["runtime"]["peerId"] == SAMPLE_PEER
            assert hello["status"]["mode"] == "live"
            assert len(hello["timeline"]) == len(hello["series"])
            kinds: set[str] = set()
            snapshots = []
            while not ({"delta", "event"} <= kinds and len(snapshots) >= 3):
                for message in json.loads(await ws.get_message()):
                    kinds.add(message["t"])
                    if message["t"] in ("snapshot", "delta"):
                        snapshots.append(message)
            assert [s["data"]["ts"] for s in snapshots] == sorted(s["data"]["ts"] for s in snapshots)
            assert snapshots[-1]["summary"]["ts"] == snapshots[-1]["data"]["ts"]
            # Numbered, each delta of the one before it (the first of the hello's latest).
            seqs = [s["seq"] for s in snapshots]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert all(s["base"] == s["seq"] - 1 for s in snapshots if s["t"] == "delta")


async def test_a_page_that_asks_for_a_resync_is_sent_a_fresh_hello(live):
    _, dashboard = live
    ws_url = dashboard.url.replace("http://", "ws://") + "feed"
    with trio.fail_after(15):
        async with open_websocket_url(ws_url, max_message_size=64 * 1024 * 1024) as ws:
            assert json.loads(await ws.get_message())[0]["t"] == "hello"
            await ws.send_message("something else")  # ignored
            await ws.send_message("resync")
            while True:  # until the hello (snapshots and events may come first)
                batch = json.loads(await ws.get_message())
                if batch[0]["t"] == "hello":
                    break
            hello = batch[0]
            assert hello["latest"] is None or hello["seq"] is None or hello["seq"] >= 1
            # The feed goes on after it.
            while not any(m["t"] in ("snapshot", "delta") for m in json.loads(await ws.get_message())):
                pass


def test_mailbox_merges_a_slow_browser_into_one_resync():
    hub = BrowserHub(max_pending=3)
    mailbox = hub.open()
    assert mailbox.needs_hello
    hellos = []

    def hello() -> str:  # the whole feed message, as the model builds it
        hellos.append(1)
        return '[{"t":"hello"}]'

    async def main() -> None:
        assert await mailbox.take(hello) == '[{"t":"hello"}]'
        for i in range(3):
            hub.broadcast(f'{{"n":{i}}}')
        assert await mailbox.take(hello) == '[{"n":0},{"n":1},{"n":2}]'
        for i in range(10):  # falls behind: the queue is dropped for one fresh hello
            hub.broadcast(f'{{"n":{i}}}')
        assert mailbox.resyncs == 1
        assert await mailbox.take(hello) == '[{"t":"hello"}]'
        hub.close(mailbox)
        hub.broadcast('{"n":99}')
        assert not mailbox.pending

    trio.run(main)
    assert len(hellos) == 2
    assert isinstance(Mailbox(), Mailbox)


def test_mailbox_resyncs_a_browser_that_falls_behind_by_bytes_too():
    # 256 pending messages of a few MB each (snapshots of a large node, 8 MB events) were
    # kept for a page that did not read: gigabytes, for one idle page.
    hub = BrowserHub(max_pending=100, max_pending_bytes=100)
    mailbox = hub.open()

    async def main() -> None:
        assert await mailbox.take(lambda: "[H]") == "[H]"
        hub.broadcast("a" * 60)
        assert mailbox.pending_bytes == 60
        hub.broadcast("b" * 60)  # 120 bytes pending would pass the bound: one resync instead
        assert mailbox.resyncs == 1 and not mailbox.pending
        assert await mailbox.take(lambda: "[H]") == "[H]"
        hub.broadcast("c" * 500)  # larger than the bound alone: still sent, nothing else waits
        assert await mailbox.take(lambda: "[H]") == "[" + "c" * 500 + "]"
        assert mailbox.resyncs == 1

    trio.run(main)


def test_the_hello_is_built_once_per_change_and_shared_by_every_page():
    # Every page got its own hello, built afresh (latest snapshot, series, 5,000 events):
    # 300 idle pages took the dashboard from 214 MB to 4.5 GB.
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.dashboard.store import Store

    model = DashboardModel(Store())
    model.feed_state(_big_state(50))
    pages = [model.hub.open() for _ in range(3)]

    async def main() -> list[str]:
        return [await page.take(model.hello) for page in pages]

    first = trio.run(main)
    assert first[0] is first[1] is first[2]
    (hello,) = json.loads(first[0])
    assert hello["t"] == "hello" and len(hello["latest"]["conns"]) == 50
    state = _big_state(60)
    state.instant_ts += 1_000
    model.feed_state(state)  # a change: the next hello is a new one, again shared
    for page in pages:
        page.resync()
    again = trio.run(main)
    assert again[0] is again[1] is again[2] and again[0] is not first[0]
    assert len(json.loads(again[0])[0]["latest"]["conns"]) == 60


def test_the_hello_holds_a_bounded_size_of_events():
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.dashboard.store import Store

    hello_event_bytes = 8 * 2**20  # model.HELLO_EVENT_BYTES

    model = DashboardModel(Store())
    model.feed_state(_big_state(1))
    for n in range(200):  # 60 KB each, kept as text (too long to parse)
        event = pb.Event(ts=1_700_000_000_000 + n, content="x" * 60_000)
        event.type.name = "Big"
        model.feed_event(event)
    text = model.hello()
    assert len(text) < hello_event_bytes + 100_000
    (hello,) = json.loads(text)
    each = len(dumps(hello["events"][0]))
    fits = hello_event_bytes // each  # the newest that fit, 139
    assert [e["ts"] for e in hello["events"]] == [
        1_700_000_000_000 + n for n in range(200 - fits, 200)
    ]
    assert hello["eventCounts"] == {"Big": 200}  # the store has them all; the page can ask


def _big_state(connections: int) -> pb.State:
    state = pb.State(instant_ts=1_700_000_000_000)
    for i in range(connections):
        conn = state.subsystems.connections.add(id=i.to_bytes(8, "big"), peer_id=f"12D3KooW{i:0>44}")
        conn.endpoints.src_multiaddr = f"/ip4/127.0.0.1/tcp/{i}/p2p/12D3KooW{i:0>44}"
        conn.endpoints.dst_multiaddr = "/ip4/127.0.0.1/tcp/4001"
        for j in range(3):
            conn.streams.streams.add(id=bytes([j]), protocol=f"/some/long/protocol/name/{j}/1.0.0")
    return state


UPGRADE = (b"GET /feed HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")  # fmt: skip


async def test_a_page_that_stops_reading_is_dropped_and_never_holds_up_stopping():
    # A hello of several MB: more than the socket buffers hold, so writing it blocks.
    config = DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0, send_timeout_s=1.0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)
            dashboard.model.feed_state(_big_state(8_000))
            assert len(dashboard.model.store.latest.text) > 4_000_000
            stuck = await trio.open_tcp_stream("127.0.0.1", dashboard.port)
            await stuck.send_all(UPGRADE)
            await trio.sleep(0.3)
            assert (await http(dashboard.url + "api/status"))[0] == 200  # others are served
            # The server gives up on the stuck page after send_timeout_s: once read, its data ends.
            await trio.sleep(2.5)
            received = 0
            with trio.fail_after(10):
                while True:
                    try:
                        data = await stuck.receive_some(1 << 20)
                    except trio.BrokenResourceError:
                        break
                    if not data:
                        break
                    received += len(data)
            assert received < len(dashboard.model.store.latest.text)  # the hello never all went
            # A second stuck page, then stop: stopping does not wait on it.
            other = await trio.open_tcp_stream("127.0.0.1", dashboard.port)
            await other.send_all(UPGRADE)
            await trio.sleep(0.3)
            started = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - started < 2.0
        await stuck.aclose()
        await other.aclose()


async def test_a_bad_connection_is_closed_and_never_stops_the_dashboard():
    # hypercorn kept an oversized binary message's buffer, then wrote the next text frame into
    # it (TypeError), and the error escaped the connection and ended the whole dashboard.
    config = DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)
            ws_url = dashboard.url.replace("http://", "ws://") + "feed"
            for size in (100 * 1024, 20 * 1024 * 1024 + 1):
                reason = None
                with trio.CancelScope() as scope:
                    async with open_websocket_url(ws_url) as ws:
                        try:
                            await ws.send_message(b"x" * size)
                            await ws.send_message("and then some text")
                            while True:
                                await ws.get_message()
                        except ConnectionClosed as exc:
                            reason = exc.reason
                        # The client then waits for the server to end TCP, which hypercorn
                        # leaves to the client (as browsers do): do not wait.
                        scope.cancel()
                assert reason is not None and reason.code == 1009, (size, reason)
                assert (await http(dashboard.url + "api/status"))[0] == 200
            for garbage in (b"\x00\xff\xfe garbage\r\n\r\n" * 100, UPGRADE + b"\x81\xff" + b"\xff" * 64):
                stream = await trio.open_tcp_stream("127.0.0.1", dashboard.port)
                await stream.send_all(garbage)
                with trio.move_on_after(2):
                    while await stream.receive_some(1 << 16):
                        pass
                await stream.aclose()
                assert (await http(dashboard.url + "api/status"))[0] == 200
            nursery.cancel_scope.cancel()


def test_an_oversized_websocket_message_is_dropped_not_buffered():
    from hypercorn.protocol import ws_stream
    from wsproto.events import BytesMessage, TextMessage

    from libp2p_introspection.dashboard.serving import DroppingWebsocketBuffer, hypercorn_config

    assert ws_stream.WebsocketBuffer is DroppingWebsocketBuffer  # what hypercorn's streams use
    buffer = DroppingWebsocketBuffer(hypercorn_config().websocket_max_message_size)
    with pytest.raises(ws_stream.FrameTooLargeError):
        buffer.extend(BytesMessage(data=b"x" * (64 * 1024 + 1), message_finished=False))
    for event in (BytesMessage(data=b"x" * 1000), TextMessage(data="text")):
        with pytest.raises(ws_stream.FrameTooLargeError):  # neither kept nor mixed in
            buffer.extend(event)
    assert buffer.value is None


async def test_the_token_goes_to_the_configured_server_only(fixtures_dir: Path, nursery, monkeypatch):
    # The page's Connect box pointed the dashboard at any server, and the token went along.
    monkeypatch.setenv("LIBP2P_INTROSPECTION_TOKEN", "from-the-environment")
    source = ReplaySource(fixtures_dir / "sample-1min.mock", speed=40, loop=True)
    server = await nursery.start(IntrospectionServer(source, ServerConfig(port=0, token="s3cret")).run)
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=server.url, port=0, token="s3cret")).run)
    requests: list[bytes] = []

    async def capture(stream: trio.SocketStream) -> None:
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(1 << 16)
                if not chunk:
                    break
                data += chunk
        requests.append(data)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await nursery.start(trio.serve_listeners, capture, listeners)
    other = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/introspect"

    async def connected() -> bool:
        _, status = await http(dashboard.url + "api/status")
        return status["connection"] == "connected"

    await wait_for(connected, what="the dashboard to follow its own server (which wants the token)")
    for url in (other, other.removeprefix("ws://")):
        count = len(requests)
        status, answer = await http(dashboard.url + "api/connect", json.dumps({"url": url}).encode(),
                                    {"Content-Type": "application/json"}, "POST")  # fmt: skip
        assert status == 200, answer

        async def captured(count: int = count) -> bool:
            return len(requests) > count

        await wait_for(captured, what="the dashboard to connect to the other server")
        request = requests[-1].lower()
        assert request.startswith(b"get /introspect ")
        assert b"x-introspection-token" not in request and b"authorization" not in request
        assert b"s3cret" not in request and b"from-the-environment" not in request
    # Back to its own server (typed as HOST:PORT): the token goes along again.
    own = server.url.removeprefix("ws://").removesuffix("/introspect")
    status, _ = await http(dashboard.url + "api/connect", json.dumps({"url": own}).encode(),
                           {"Content-Type": "application/json"}, "POST")  # fmt: skip
    assert status == 200
    await wait_for(connected, what="the dashboard to follow its own server again")


def test_token_for_matches_the_configured_endpoint_only():
    from libp2p_introspection.dashboard.feed import LiveFeed

    feed = LiveFeed("ws://127.0.0.1:8845/introspect", object(), token="s3cret")  # type: ignore[arg-type]
    for same in ("ws://127.0.0.1:8845/introspect", "WS://127.0.0.1/introspect", "ws://127.0.0.1:8845"):
        assert feed.token_for(same) == "s3cret", same
    for other in ("ws://127.0.0.1:8846/introspect", "wss://127.0.0.1:8845/introspect",
                  "ws://evil.example:8845/introspect", "ws://127.0.0.1:8845/other",
                  "ws://127.0.0.1:8845/introspect?x=1", "ws://127.0.0.1:99999/introspect"):  # fmt: skip
        assert feed.token_for(other) == "", other  # "": no token, not even the environment's
    assert LiveFeed("ws://127.0.0.1:8845/introspect", object()).token_for(  # type: ignore[arg-type]
        "ws://127.0.0.1:8845/introspect"
    ) is None  # no token given: the environment's, as before
