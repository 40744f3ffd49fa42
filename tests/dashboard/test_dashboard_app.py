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
from trio_websocket import ConnectionRejected, open_websocket_url

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.app import BadRequest, normalize_url
from libp2p_introspection.dashboard.browsers import BrowserHub, Mailbox
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


async def test_pause_resume_and_connect_commands(live):
    server, dashboard = live
    status, answer = await http(dashboard.url + "api/pause", b"", method="POST")
    assert status == 200 and answer["status"]["paused"] is True
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
    data = (fixtures_dir / "sample-1min.mock").read_bytes()
    status, answer = await http(dashboard.url + "api/recording", data, {}, "POST")
    assert status == 413 and "1000-byte limit" in answer["error"]


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
            while not ({"snapshot", "event"} <= kinds and len(snapshots) >= 3):
                for message in json.loads(await ws.get_message()):
                    kinds.add(message["t"])
                    if message["t"] == "snapshot":
                        snapshots.append(message)
            assert [s["data"]["ts"] for s in snapshots] == sorted(s["data"]["ts"] for s in snapshots)
            assert snapshots[-1]["summary"]["ts"] == snapshots[-1]["data"]["ts"]


def test_mailbox_merges_a_slow_browser_into_one_resync():
    hub = BrowserHub(max_pending=3)
    mailbox = hub.open()
    assert mailbox.needs_hello
    hellos = []

    def hello() -> str:
        hellos.append(1)
        return '{"t":"hello"}'

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
