"""Our clients (record, watch, the dashboard's feed) against a server that speaks as
observer-toolkit's mock server does: text frames holding binary strings, and
``ServerMessage.version`` unset (PROTOCOL.md §2, "Being liberal in what a client
accepts"). Loopback only; every wait bounded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio
from toolkit_server import ToolkitStyleServer, binary_string, toolkit_style_server
from trio_websocket import ConnectionClosed, serve_websocket

from libp2p_introspection.client.connection import ProtocolError, connect
from libp2p_introspection.client.recorder import Outcome, Recorder
from libp2p_introspection.client.watch import watch
from libp2p_introspection.dashboard.feed import ConnectionState, LiveFeed
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame
from libp2p_introspection.protocol.recording import RecordingReader

LIMIT = 30  # seconds: a safety net, not an assertion


@pytest.fixture
def sample(fixtures_dir: Path) -> Path:
    return fixtures_dir / "sample-1min.mock"


def _records(path: Path) -> list[tuple[str, bytes]]:
    with RecordingReader(path) as reader:
        assert reader.checksum_failures == 0 and not reader.truncated
        return [(r.message().WhichOneof("payload"), r.data) for r in reader]


async def test_record_reads_text_frames_and_keeps_their_bytes(tmp_path, sample):
    # It stopped at once: "server sent a text frame; introspection frames are binary".
    out = tmp_path / "from-toolkit.mock"
    with trio.fail_after(LIMIT):
        async with toolkit_style_server(sample) as server:
            recorder = Recorder(server.url, out, count=5, events=True)
            await recorder.run()
    result = recorder.result()
    assert result.outcome is Outcome.COMPLETED, result.summary()
    records = _records(out)
    assert [kind for kind, _ in records].count("state") == 5
    assert records[0] == ("runtime", server.runtime)  # the bytes the frame spelled
    recorded = [data for _, data in records]
    assert recorded == server.sent[: len(recorded)]  # as received, byte for byte, in order
    assert any(kind == "event" for kind, _ in records)
    assert not pb.ServerMessage.FromString(records[1][1]).HasField("version")


async def test_watch_reads_text_frames(sample):
    lines: list[dict] = []
    with trio.fail_after(LIMIT):
        async with toolkit_style_server(sample) as server:
            await watch(server.url, count=3, events=True, emit=lines.append)
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "runtime" and lines[0]["implementation"] == "go-libp2p"
    assert kinds.count("state") == 3 and "event" in kinds
    assert lines[1]["connections"] == 6  # the fixture's first snapshot


class _Sink:
    def __init__(self) -> None:
        self.runtimes: list[pb.Runtime] = []
        self.states: list[pb.State] = []
        self.events: list[pb.Event] = []

    def feed_switched(self, url: str) -> None: ...
    def feed_notice(self) -> None: ...
    def feed_status(self) -> None: ...

    def feed_runtime(self, runtime: pb.Runtime) -> None:
        self.runtimes.append(runtime)

    def feed_state(self, state: pb.State) -> None:
        self.states.append(state)

    def feed_event(self, event: pb.Event) -> None:
        self.events.append(event)


async def test_the_dashboard_feed_reads_text_frames(sample):
    sink = _Sink()
    with trio.fail_after(LIMIT):
        async with toolkit_style_server(sample) as server, trio.open_nursery() as nursery:
            feed = LiveFeed(server.url, sink, retention_ms=60_000)
            await nursery.start(feed.run)
            while len(sink.states) < 5 or not sink.events:
                await trio.sleep(0.01)
            assert feed.state == ConnectionState.CONNECTED and feed.error == ""
            nursery.cancel_scope.cancel()
    assert sink.runtimes[0].implementation == "go-libp2p"
    instants = [s.instant_ts for s in sink.states]
    assert instants == sorted(set(instants))


async def test_a_character_above_u00ff_closes_with_1007_and_keeps_the_recording(tmp_path, sample):
    out = tmp_path / "poisoned.mock"
    with trio.fail_after(LIMIT):
        async with toolkit_style_server(sample, poison_after=3) as server:
            recorder = Recorder(server.url, out, events=False)
            await recorder.run()
            while not server.close_codes:
                await trio.sleep(0.01)
    result = recorder.result()
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "above U+00FF" in result.detail and "U+2603" in result.detail
    assert server.close_codes == [1007]
    assert [kind for kind, _ in _records(out)] == ["runtime", "state", "state", "state"]


async def test_record_exits_non_zero_on_a_text_frame_that_is_not_a_binary_string(tmp_path,
                                                                                sample):  # fmt: skip
    out = tmp_path / "poisoned.mock"
    with trio.fail_after(LIMIT):
        async with toolkit_style_server(sample, poison_after=2) as server:
            done = await trio.run_process(
                [sys.executable, "-m", "libp2p_introspection", "record", server.url, "-o",
                 str(out), "--no-events", "--no-progress"],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "above U+00FF" in stderr and "3 records" in stderr
    assert [kind for kind, _ in _records(out)] == ["runtime", "state", "state"]


async def _serve_frames(frames: list[str | bytes], *, task_status=trio.TASK_STATUS_IGNORED):
    async def handler(request):
        ws = await request.accept()
        try:
            for frame in frames:
                await ws.send_message(frame)
            await trio.sleep_forever()
        except ConnectionClosed:
            pass

    await serve_websocket(handler, "127.0.0.1", 0, None, task_status=task_status)


async def test_the_size_limit_counts_the_decoded_bytes_of_a_text_frame():
    # A connection id of 1,000 bytes from 0x80 up: 2,000-odd bytes of UTF-8 on the
    # wire, 1,000-odd once decoded, under the client's 1,100-byte limit.
    state = pb.ServerMessage()
    state.state.subsystems.connections.add(id=bytes([0xE9]) * 1_000)
    data = state.SerializeToString()
    text = binary_string(encode_frame(data))
    assert len(text.encode("utf-8")) > 1_100 >= len(text)
    too_big = binary_string(encode_frame(b"\x22" + bytes([0x80]) * 1_200))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve_frames, [text, too_big])
            url = f"ws://127.0.0.1:{server.port}/introspect"
            async with connect(url, max_message_size=1_100, limits=None) as client:
                received = await client.receive()
                assert received.data == data and received.kind == "state"
                with pytest.raises(ConnectionClosed) as closed:
                    await client.receive()
                assert closed.value.reason.code == 1009
            nursery.cancel_scope.cancel()


async def test_a_text_frame_is_checked_as_a_binary_frame_is():
    good = pb.ServerMessage()
    good.state.instant_ts = 7
    frame = bytearray(encode_frame(good.SerializeToString()))
    frame[4] ^= 0xFF  # a checksum that does not match
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve_frames, [binary_string(bytes(frame))])
            async with connect(f"ws://127.0.0.1:{server.port}/introspect") as client:
                with pytest.raises(ProtocolError, match=r"text frame.*checksum mismatch"):
                    await client.receive()
            nursery.cancel_scope.cancel()


def test_the_toolkit_style_server_sends_no_version(sample):
    server = ToolkitStyleServer(sample)
    assert not pb.ServerMessage.FromString(server.runtime).HasField("version")
    assert server.items and all(
        not pb.ServerMessage.FromString(data).HasField("version") for _, data in server.items
    )
