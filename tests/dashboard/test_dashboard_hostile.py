"""The dashboard's own port against hostile clients: resets, compression bombs, foreign pages.

Real sockets on loopback; every wait is bounded and nothing is timed: a
bound is what must happen at all (a closed connection, an answer), never how
fast. Memory is measured on a dashboard subprocess (its peak resident size).
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
import trio
from cli_process import running
from trio_websocket import open_websocket_url

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.protocol import pb

NOWHERE = "ws://127.0.0.1:9/introspect"  # the live feed retries there; the port is what matters
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def _request(url: str, data: bytes | None, headers: dict[str, str], method: str | None,
             timeout: float) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


async def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
               method: str | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """(status, headers, body); ``timeout`` bounds the whole exchange, seconds."""
    return await trio.to_thread.run_sync(_request, url, data, headers or {}, method, timeout)


def upgrade_request(port: int, extra: bytes = b"") -> bytes:
    return (b"GET /feed HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n"
            % (port, KEY, extra))  # fmt: skip


def client_frame(
    payload: bytes, *, opcode: int = 0x2, fin: bool = True, rsv1: bool = False
) -> bytes:
    """A masked client frame (zero mask key: the payload goes as it is, still valid)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


def deflate_bomb(inflated: int) -> bytes:
    """A permessage-deflate payload that inflates to ``inflated`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = b"".join(compressor.compress(chunk) for _ in range(inflated // len(chunk)))
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    return out.removesuffix(b"\x00\x00\xff\xff")


async def read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(1 << 16)
        if not chunk:
            break
        data += chunk
    return data


def reset(stream: trio.SocketStream) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing client does."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


def _state(connections: int) -> pb.State:
    state = pb.State(instant_ts=1_700_000_000_000)
    for i in range(connections):
        conn = state.subsystems.connections.add(
            id=i.to_bytes(8, "big"), peer_id=f"12D3KooW{i:0>44}"
        )
        conn.endpoints.src_multiaddr = f"/ip4/127.0.0.1/tcp/{i}"
        for j in range(3):
            conn.streams.streams.add(id=bytes([j]), protocol=f"/some/protocol/{j}/1.0.0")
    return state


async def test_a_reset_storm_at_random_points_never_stops_the_dashboard(fixtures_dir: Path, caplog):
    # Each client sends a prefix of a request (an HTTP GET, a command with its body, a
    # recording upload, a WebSocket upgrade and frames), cut at a random byte, may read a
    # little of the answer, then resets the connection. None may take the dashboard down.
    recording = (fixtures_dir / "sample-1min.mock").read_bytes()[:200_000]
    config = DashboardConfig(url=NOWHERE, port=0)
    rng = random.Random(9)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)
            dashboard.model.feed_state(_state(connections=400))  # a hello of ~200 KB to cut short
            port = dashboard.port
            host = b"Host: 127.0.0.1:%d\r\n" % port
            body = json.dumps({"url": NOWHERE}).encode()
            templates = [
                b"GET /api/status HTTP/1.1\r\n" + host + b"\r\n",
                b"GET / HTTP/1.1\r\n"
                + host
                + b"\r\nGET /static/js/app.js HTTP/1.1\r\n"
                + host
                + b"\r\n",
                b"POST /api/connect HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
                b"POST /api/recording HTTP/1.1\r\n"
                + host
                + b"Content-Length: %d\r\n\r\n%s" % (len(recording), recording),
                b"POST /api/pause HTTP/1.1\r\n"
                + host
                + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
                upgrade_request(port)
                + client_frame(b"x" * 300)
                + client_frame(b"hello", opcode=0x1)
                + client_frame(b"\x03\xe8", opcode=0x8),
                upgrade_request(port, b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
                + client_frame(deflate_bomb(1 << 20), rsv1=True),
                upgrade_request(port) + client_frame(b"y" * 70_000, fin=False),
            ]

            async def one(template: bytes, cut: int, read: bool) -> None:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                try:
                    await stream.send_all(template[:cut])
                    if read:
                        with trio.move_on_after(0.05):  # a little of the answer, if any
                            await stream.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    pass  # the dashboard closed it first: fine
                finally:
                    reset(stream)

            for _ in range(8):  # 8 rounds of 30 clients at once
                async with trio.open_nursery() as storm:
                    for _ in range(30):
                        template = rng.choice(templates)
                        storm.start_soon(
                            one, template, rng.randrange(1, len(template) + 1), rng.random() < 0.5
                        )
            # Still serving: commands, reads and the feed.
            status, _, data = await http(dashboard.url + "api/status")
            assert status == 200 and json.loads(data)["mode"] == "live"
            async with open_websocket_url(dashboard.url.replace("http://", "ws://") + "feed",
                                          max_message_size=1 << 24) as ws:  # fmt: skip
                assert json.loads(await ws.get_message())[0]["t"] == "hello"
            nursery.cancel_scope.cancel()
    # A reset is the client's business: nothing the dashboard logs as its own failure.
    failures = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not failures, [r.getMessage() for r in failures]


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size (``VmHWM``), KiB (Linux)."""
    path = Path(f"/proc/{pid}/status")
    if not path.exists():
        pytest.skip("no /proc: peak memory is measured on Linux")
    status = path.read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1))


async def _hostile_feed_client(
    port: int, frames: list[bytes], offer_deflate: bool
) -> dict[str, Any]:
    """Open /feed, send ``frames`` as fast as the dashboard reads them, read what it answers.

    Returns the handshake's headers, the bytes sent before the dashboard stopped
    taking them, the close code it sent (None if none) and whether it closed the
    connection (EOF or reset within the bound).
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    extra = (
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        if offer_deflate
        else b""
    )
    await stream.send_all(upgrade_request(port, extra))
    head = await read_head(stream)
    status_line, *lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    result: dict[str, Any] = {"status": status_line, "headers": headers, "sent": 0, "close": None,
                              "closed": False}  # fmt: skip
    received = bytearray(head.split(b"\r\n\r\n", 1)[1])

    async def send() -> None:
        try:
            for frame in frames:
                await stream.send_all(frame)
                result["sent"] += len(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def receive() -> None:
        while True:
            try:
                data = await stream.receive_some(1 << 16)
            except trio.BrokenResourceError:  # reset: closed all the same
                data = b""
            if not data:
                result["closed"] = True
                break
            received.extend(data)
        nursery.cancel_scope.cancel()

    with trio.move_on_after(20):  # the bound on the dashboard closing it at all
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(receive)
    with trio.CancelScope(shield=True):
        await stream.aclose()
    result["close"] = close_code(bytes(received))
    return result


def close_code(data: bytes) -> int | None:
    """The code of the first close frame among the server's (unmasked) frames, if any."""
    at = 0
    while at + 2 <= len(data):
        opcode, n = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if n == 126:
            n, at = struct.unpack("!H", data[at : at + 2])[0], at + 2
        elif n == 127:
            n, at = struct.unpack("!Q", data[at : at + 8])[0], at + 8
        if opcode == 0x8:
            return (
                struct.unpack("!H", data[at : at + 2])[0]
                if n >= 2 and at + 2 <= len(data)
                else None
            )
        at += n
    return None


async def test_feed_offers_no_compression_and_hostile_frames_neither_grow_memory_nor_stall():
    # The feed accepted permessage-deflate and inflated every frame whole before its 64 KiB
    # check, and kept inflating after its 1009: a 64 KiB frame took the process from 112 to
    # 304 MB and a stream of them held /api/status up for seconds.
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", NOWHERE]
    with running(args, first_line_timeout=60) as (process, url):
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        with trio.fail_after(120):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/feed") as ws:  # warm up
                assert json.loads(await ws.get_message())[0]["t"] == "hello"
            assert (await http(url + "api/status"))[0] == 200
            baseline = _peak_rss_kib(process.pid)

            # Offered compression, the answer takes none.
            plain = await _hostile_feed_client(port, [client_frame(b"\x03\xe8", opcode=0x8)], True)
            assert plain["status"].startswith("HTTP/1.1 101"), plain
            assert "sec-websocket-extensions" not in plain["headers"], plain

            # Compressed frames anyway: 16 of them, each ~32 KiB inflating to 32 MiB.
            bomb = client_frame(deflate_bomb(32 << 20), rsv1=True)
            hostile = [bomb] * 16
            # And a stream of 4 MiB in uncompressed fragments of one message.
            fragments = [client_frame(b"z" * 65536, fin=False)] + [
                client_frame(b"z" * 65536, opcode=0x0, fin=False) for _ in range(63)
            ]
            answers: list[int] = []
            results: dict[str, dict[str, Any]] = {}

            async def attack(name: str, frames: list[bytes]) -> None:
                results[name] = await _hostile_feed_client(port, frames, True)

            async def status_meanwhile() -> None:
                for _ in range(3):  # while the hostile clients send: answered, within 10 s each
                    answers.append((await http(url + "api/status", timeout=10))[0])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(attack, "deflate", hostile)
                nursery.start_soon(attack, "oversized", fragments)
                nursery.start_soon(status_meanwhile)
            peak = _peak_rss_kib(process.pid)
            assert answers == [200, 200, 200]
            for name, result in results.items():
                assert result["closed"], (name, result)  # the dashboard ended the connection
            # (wsproto refuses the first RSV1 frame: hypercorn drops the connection, no close frame.)
            assert results["oversized"]["close"] == 1009, results["oversized"]
            # It stopped taking bytes soon after its limit (the socket buffers aside).
            assert results["oversized"]["sent"] < sum(map(len, fragments)), results["oversized"]
            # Generous: inflating even one bomb frame costs 32 MiB or more.
            assert peak - baseline < 24 * 1024, (baseline, peak)
            assert (await http(url + "api/status"))[0] == 200


async def test_commands_come_from_the_dashboards_own_page_only(nursery):
    # Any loopback origin could POST commands (a page on another local port), and
    # /api/connect took a text/plain body, which a plain HTML form can send.
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=NOWHERE, port=0)).run)
    own = dashboard.url.rstrip("/")
    body = json.dumps({"url": "ws://127.0.0.1:9/other"}).encode()
    as_json = {"Content-Type": "application/json"}

    async def connect(headers: dict[str, str]) -> int:
        return (await http(dashboard.url + "api/connect", body, headers, "POST"))[0]

    for foreign in ("http://localhost:1234", "http://127.0.0.1:1", "https://evil.example", "null"):
        assert await connect({**as_json, "Origin": foreign}) == 403, foreign
        assert (await http(dashboard.url + "api/pause", b"", {"Origin": foreign}, "POST"))[0] == 403
    for site in ("cross-site", "same-site"):  # a browser's word for another page's request
        assert await connect({**as_json, "Sec-Fetch-Site": site}) == 403, site
    assert await connect({"Content-Type": "text/plain", "Origin": own}) == 415
    assert await connect({"Content-Type": "text/plain"}) == 415
    _, _, data = await http(dashboard.url + "api/status")
    assert json.loads(data)["url"] == NOWHERE and not json.loads(data)["paused"]  # nothing changed
    # The page itself, and tools without Origin, still command it.
    assert await connect({**as_json, "Origin": own, "Sec-Fetch-Site": "same-origin"}) == 200
    assert (await http(dashboard.url + "api/pause", b"", {}, "POST"))[0] == 200
    # Reads stay open to loopback pages, as the introspection endpoint's are.
    assert (await http(dashboard.url + "api/status", headers={"Origin": "http://localhost:1234"}))[
        0
    ] == 200


async def test_every_answer_carries_the_csp_and_no_sniffing(nursery):
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=NOWHERE, port=0)).run)
    host = f"127.0.0.1:{dashboard.port}"
    for path, headers, code in (
        ("", {}, 200),
        ("static/js/app.js", {}, 200),
        ("api/status", {}, 200),
        ("api/snapshot", {}, 404),
        ("nothing-here", {}, 404),
        ("api/status", {"Origin": "https://evil.example"}, 403),
    ):
        status, answer, _ = await http(dashboard.url + path, headers=headers)
        assert status == code, (path, status)
        got = {k.lower(): v for k, v in answer.items()}
        policy = got.get("content-security-policy", "")
        assert policy.startswith("default-src 'self'; script-src 'self'; style-src 'self'"), policy
        assert f"connect-src 'self' ws://{host} wss://{host};" in policy, policy
        assert "unsafe" not in policy and "frame-ancestors 'none'" in policy, policy
        assert got.get("x-content-type-options") == "nosniff", (path, got)
        assert got.get("cross-origin-resource-policy") == "same-origin", (path, got)


# ------------------------------------------------------- how many pages, how big a body


async def _upgrade_and_wait(port: int) -> tuple[trio.SocketStream, bytes, bytes]:
    """Open /feed; returns the stream, the answer's status line and what followed its head.

    For a 101, waits for the first bytes of the first message (the hello was built and its
    sending began), then reads nothing more.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await stream.send_all(upgrade_request(port))
    head = await read_head(stream)
    status, _, rest = head.partition(b"\r\n\r\n")
    status_line = status.split(b"\r\n")[0]
    if b" 101 " in status_line:
        while len(rest) < 2:
            rest += await stream.receive_some(2)
    else:
        while True:  # the refusal's body, to its end (the server closes after it)
            data = await stream.receive_some(1 << 16)
            if not data:
                break
            rest += data
    return stream, status_line, rest


async def test_feed_pages_are_capped_and_the_refused_one_is_told_why(nursery):
    # Any number of /feed connections were taken, each with its own hello.
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=NOWHERE, port=0)).run)
    ws_url = dashboard.url.replace("http://", "ws://") + "feed"
    with trio.fail_after(30):
        pages = []
        for _ in range(16):  # the documented default
            stream, status, _ = await _upgrade_and_wait(dashboard.port)
            assert b" 101 " in status, status
            pages.append(stream)
        _, status, body = await _upgrade_and_wait(dashboard.port)
        assert b" 503 " in status, status
        assert b"16 dashboard pages are open already" in body, body
        assert (await http(dashboard.url + "api/status"))[0] == 200
        await pages.pop().aclose()  # one page goes: another may come
        while True:  # the dashboard notices the page leaving (bounded by fail_after)
            stream, status, _ = await _upgrade_and_wait(dashboard.port)
            if b" 101 " in status:
                break
            await trio.sleep(0.05)
        await stream.aclose()
        for page in pages:
            await page.aclose()
        async with open_websocket_url(ws_url, max_message_size=1 << 24) as ws:
            while True:  # (bounded by fail_after) until the closed pages are gone
                assert json.loads(await ws.get_message())[0]["t"] == "hello"
                break


def _write_big_recording(path: Path, connections: int) -> int:
    from libp2p_introspection.dashboard.recording import load_recording
    from libp2p_introspection.protocol.recording import RecordingWriter

    runtime = pb.ServerMessage()
    runtime.version.version = 1
    runtime.runtime.peer_id = "QmBig"
    message = pb.ServerMessage()
    message.version.version = 1
    message.state.CopyFrom(_state(connections))
    with RecordingWriter(path) as writer:
        writer.write(runtime.SerializeToString())
        writer.write(message.SerializeToString())
    store, _ = load_recording(path)
    return len(store.latest.text)


async def test_pages_that_never_read_cost_a_bounded_amount(tmp_path):
    # 300 idle /feed clients took the dashboard from 214 MB to 4.5 GB (a hello built for
    # each, held while its send waited) and /api/status waited 6 s.
    path = tmp_path / "big.mock"
    snapshot_bytes = _write_big_recording(path, 3_000)
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(path), NOWHERE]
    with running(args, first_line_timeout=60) as (process, url):
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        with trio.fail_after(60):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/feed",
                                          max_message_size=1 << 26) as ws:  # fmt: skip
                # Warm up: one whole hello (its snapshot without its streams, which pages
                # ask for a page at a time: a fraction of the snapshot's bytes, not nothing).
                hello_bytes = len(await ws.get_message())
                assert snapshot_bytes / 20 < hello_bytes, (hello_bytes, snapshot_bytes)
                hello_mb = hello_bytes / 2**20
            baseline = _peak_rss_kib(process.pid)
            clients = [await _upgrade_and_wait(port) for _ in range(48)]
            peak = _peak_rss_kib(process.pid)
            statuses = [status for _, status, _ in clients]
            assert (await http(url + "api/status"))[0] == 200
            for stream, _, _ in clients:
                await stream.aclose()
    # One shared hello, and each admitted page's copy in the WebSocket library's frame while
    # it waits (measured: 37 MB here; 234 MB before, a hello built per page).
    assert (peak - baseline) / 1024 < 24 * hello_mb + 8, (baseline, peak, hello_mb)
    admitted = sum(b" 101 " in s for s in statuses)
    assert admitted <= 16 and admitted + sum(b" 503 " in s for s in statuses) == 48, statuses


async def _post_body(port: int, path: bytes, head: bytes, pieces: int, piece: bytes,
                     first: bytes = b"") -> tuple[bytes, bytes, int]:  # fmt: skip
    """POST ``first`` then ``pieces`` times ``piece``, with the headers ``head``; the answer's
    status line and body, and how many pieces the dashboard took before it answered and closed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    request = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (path, port, head)
    await stream.send_all(request + first)
    sent = 0
    answer = bytearray()

    async def send() -> None:
        nonlocal sent
        try:
            for _ in range(pieces):
                await stream.send_all(piece)
                sent += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def receive() -> None:
        while True:
            try:
                data = await stream.receive_some(1 << 16)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                break
            answer.extend(data)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    await stream.aclose()
    status, _, body = bytes(answer).partition(b"\r\n\r\n")
    return status.split(b"\r\n")[0], body, sent


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_a_command_body_is_read_up_to_4_kib_and_no_further(nursery):
    # POST /api/connect read its whole body into memory: 1 GB took the dashboard to 995 MB.
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=NOWHERE, port=0)).run)
    port = dashboard.port
    as_json = b"Content-Type: application/json\r\n"
    pad = b"A" * (1 << 20)
    with trio.fail_after(30):
        # Declared: refused before a byte of it is read.
        status, body, sent = await _post_body(
            port, b"/api/connect", as_json + b"Content-Length: %d\r\n" % (64 << 20), 64, pad
        )
        assert b" 413 " in status and b"at most 4096 bytes" in body, (status, body)
        assert sent < 64, sent
        # Chunked (no length): refused once past 4 KiB, the rest never read.
        start = _chunk(b'{"url":"ws://127.0.0.1:9/introspect","pad":"')
        chunked = as_json + b"Transfer-Encoding: chunked\r\n"
        status, body, sent = await _post_body(
            port, b"/api/connect", chunked, 64, _chunk(pad), start
        )
        assert b" 413 " in status, (status, body)
        assert sent < 64, sent
        assert (await http(dashboard.url + "api/status"))[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 2_000 + b"]" * 2_000,
        b'{"url": ' + b"[" * 1_500 + b"]" * 1_500 + b"}",
        b"\xff\xfe{",
        b"{",
        b'["ws://127.0.0.1:9/introspect"]',
        b"",
    ],
    ids=["deep array", "deep object", "not UTF-8", "cut short", "not an object", "empty"],
)
async def test_a_malformed_command_gets_400_never_500(nursery, body):
    # Nesting 100,000 deep raised RecursionError out of the route: HTTP 500, a traceback.
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=NOWHERE, port=0)).run)
    status, _, answer = await http(dashboard.url + "api/connect", body,
                                   {"Content-Type": "application/json"}, "POST")  # fmt: skip
    assert status == 400, (status, answer)
    assert json.loads(answer)["error"]
    _, _, data = await http(dashboard.url + "api/status")
    assert json.loads(data)["url"] == NOWHERE


async def test_an_upload_is_refused_as_it_streams_past_the_limit(nursery):
    # (Already so before: checked here so that it stays so.) No Content-Length: the body is
    # read as it comes and refused past the limit, not buffered whole first.
    config = DashboardConfig(url=NOWHERE, port=0, max_upload_bytes=1 << 20)
    dashboard = await nursery.start(Dashboard(config).run)
    with trio.fail_after(30):
        chunked, piece = b"Transfer-Encoding: chunked\r\n", _chunk(b"B" * (1 << 20))
        status, body, sent = await _post_body(dashboard.port, b"/api/recording", chunked, 64, piece)
    assert b" 413 " in status and b"1048576-byte limit" in body, (status, body)
    assert sent < 64, sent
