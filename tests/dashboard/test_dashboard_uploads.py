"""Recording uploads (``POST /api/recording``): one at a time, within a deadline, spooled
to disk early, and their temporary files gone whichever way they end.

100 uploads of just under 8 MB each, left stalled, once took the dashboard from 41 to
838 MB and held it for ever (no deadline, 8 MiB in memory each); 4 complete uploads at
once each built a whole store (666 MB at the peak). Real HTTP on loopback; the deadline
is made short by configuration, and nothing here waits on a clock to pass a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import pytest
import trio

from libp2p_introspection.dashboard import Dashboard, DashboardConfig

MiB = 1024 * 1024


@pytest.fixture
def spool_dir(tmp_path, monkeypatch) -> Path:
    """Where uploads spool to disk (``tempfile``'s directory for this test)."""
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def spooled(directory: Path) -> list[str]:
    """This process's open files in ``directory`` (unnamed temporary files included)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


async def until(condition, what: str) -> None:
    """Wait for ``condition()`` (a bounded poll: the server works in this same process)."""
    for _ in range(3_000):
        if condition():
            return
        await trio.sleep(0.01)
    pytest.fail(f"never happened: {what}")


async def start_upload(port: int, declared: int, sent: int) -> trio.SocketStream:
    """An upload that declares ``declared`` bytes and sends ``sent`` of them."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        b"POST /api/recording HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/octet-stream\r\nX-File-Name: stalled.mock\r\n"
        b"Content-Length: %d\r\n\r\n" % (port, declared)
    )
    chunk = b"\0" * 65536
    for offset in range(0, sent, len(chunk)):
        await stream.send_all(chunk[: min(len(chunk), sent - offset)])
    return stream


async def answer(stream: trio.SocketStream) -> tuple[int, dict, bool]:
    """The response's status and JSON body, and whether the server said it closes the
    connection (it then must: its end is read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = await stream.receive_some(65536)
        assert more, data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))  # fmt: skip
    while len(body) < length:
        more = await stream.receive_some(65536)
        assert more
        body += more
    closed = b"connection: close" in head.lower()
    if closed:  # and the server does close it
        with contextlib.suppress(trio.BrokenResourceError):
            assert await stream.receive_some(65536) == b""
    return int(head.split()[1]), json.loads(body[:length]), closed


async def upload(port: int, data: bytes) -> tuple[int, dict, bool]:
    stream = await start_upload(port, len(data), 0)
    await stream.send_all(data)
    async with stream:
        return await answer(stream)


async def test_one_upload_at_a_time_and_the_spool_spills_early(fixtures_dir, spool_dir):
    recording = (fixtures_dir / "sample-1min.mock").read_bytes()
    config = DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)
            stalled = await start_upload(dashboard.port, 10 * MiB, 2 * MiB)
            # Past 1 MiB the body is on disk (main kept 8 MiB in memory per upload).
            await until(lambda: spooled(spool_dir), "the stalled upload spooled to disk")
            code, body, closed = await upload(dashboard.port, recording)  # read, and dropped
            assert code == 409 and not closed
            assert body == {"ok": False, "error": "another recording is being uploaded; "
                                                  "try again when it is shown"}  # fmt: skip
            assert dashboard.app.state.uploads.refused == 1
            await stalled.aclose()  # the client leaves: its file goes, the next one is taken
            await until(lambda: not dashboard.app.state.uploads.busy, "the upload ended")
            assert spooled(spool_dir) == []
            code, body, _ = await upload(dashboard.port, recording)
            assert code == 200 and body["status"]["mode"] == "recording"
            assert spooled(spool_dir) == []
            nursery.cancel_scope.cancel()


async def test_an_upload_that_stalls_is_refused_at_its_deadline(fixtures_dir, spool_dir):
    recording = (fixtures_dir / "sample-1min.mock").read_bytes()
    config = DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0, upload_timeout_s=1.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)
            async with await start_upload(dashboard.port, 10 * MiB, 2 * MiB) as stalled:
                code, body, closed = await answer(stalled)
            assert code == 408 and closed
            assert body["error"].startswith("the upload did not finish within 1 s (")
            assert spooled(spool_dir) == []
            assert not dashboard.app.state.uploads.busy
            code, _, _ = await upload(dashboard.port, recording)  # the next one is taken
            assert code == 200
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("case", ["too large", "not a recording"])
async def test_a_refused_upload_leaves_no_file(spool_dir, case):
    config = DashboardConfig(url="ws://127.0.0.1:9/introspect", port=0, max_upload_bytes=3 * MiB)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dashboard = await nursery.start(Dashboard(config).run)
            if case == "too large":  # chunked: refused once past the limit, mid-body
                stream = await trio.open_tcp_stream("127.0.0.1", dashboard.port)
                await stream.send_all(b"POST /api/recording HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
                chunk = b"10000\r\n" + b"\0" * 65536 + b"\r\n"
                for _ in range(3 * MiB // 65536 + 1):  # the last chunk passes the limit
                    await stream.send_all(chunk)
                async with stream:
                    code, body, _ = await answer(stream)
                assert code == 413 and "larger than the 3145728-byte limit" in body["error"]
            else:
                code, _, _ = await upload(dashboard.port, b"\xff" * (2 * MiB))
                assert code == 422
            await until(lambda: not dashboard.app.state.uploads.busy, "the upload ended")
            assert spooled(spool_dir) == []
            nursery.cancel_scope.cancel()
