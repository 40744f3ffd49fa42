"""The recorder facing a misbehaving server, and a full disk: clear errors, bounded
memory, and nothing already recorded lost."""

from __future__ import annotations

import contextlib
import errno
import struct

import pytest
import trio
from hostile_records import empty_connections_state
from trio_websocket import ConnectionClosed, serve_websocket

from libp2p_introspection.client import recorder as recorder_module
from libp2p_introspection.client.connection import Received, connect
from libp2p_introspection.client.recorder import Outcome, Recorder
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame, encode_server_message
from libp2p_introspection.protocol.recording import RecordingReader
from libp2p_introspection.protocol.wire import RecordLimits

LIMIT = 30


def _runtime_and_state() -> list[bytes]:
    runtime = pb.ServerMessage()
    runtime.runtime.implementation = "hostile"
    state = pb.ServerMessage()
    state.state.instant_ts = 1
    return [encode_server_message(runtime), encode_server_message(state)]


def _nested(depth: int) -> bytes:
    """A ServerMessage whose Connection nests `depth` levels through relayed_over.conn."""
    inner = b""
    for _ in range(depth):
        inner = b"\x8a\x01" + _varint(len(inner)) + inner  # Connection.conn = 17
    connection = inner
    subsystems = b"\x0a" + _varint(len(connection)) + connection
    state = b"\x0a" + _varint(len(subsystems)) + subsystems
    return b"\x12" + _varint(len(state)) + state


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bad_checksum() -> bytes:
    frame = bytearray(_runtime_and_state()[1])
    frame[4] ^= 0xFF
    return bytes(frame)


def _wrong_version() -> bytes:
    return struct.pack("<I", 7) + _runtime_and_state()[1][4:]


def _length_mismatch() -> bytes:
    good = _runtime_and_state()[1]
    version, checksum, length = struct.unpack_from("<III", good)
    return struct.pack("<III", version, checksum, length + 5) + good[12:]


async def _serve(behaviour, *, task_status=trio.TASK_STATUS_IGNORED):
    async def handler(request):
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):  # the recorder may hang up first
            for frame in _runtime_and_state():
                await ws.send_message(frame)
            await behaviour(ws)

    await serve_websocket(handler, "127.0.0.1", 0, None, max_message_size=1 << 26,
                          task_status=task_status)  # fmt: skip


async def _record(tmp_path, behaviour, **options) -> tuple[Recorder, list[str]]:
    path = tmp_path / "hostile.mock"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve, behaviour)
            url = f"ws://127.0.0.1:{server.port}/introspect"
            recorder = Recorder(url, path, events=False, **options)
            await recorder.run()
            nursery.cancel_scope.cancel()
    with RecordingReader(path) as reader:
        kinds = [r.message().WhichOneof("payload") for r in reader]
    return recorder, kinds


def _send(frame):
    async def behaviour(ws):
        await ws.send_message(frame)
        await trio.sleep_forever()

    return behaviour


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_bad_checksum(), "checksum mismatch"),
        (_wrong_version(), "version 7"),
        (_length_mismatch(), "announces"),
        ("a text frame", "text frame"),
        (encode_frame(_nested(3000)), "does not parse"),
        (encode_frame(b"\xff\xff\xff"), "does not parse"),
    ],
    ids=["bad-checksum", "wrong-version", "length-mismatch", "text", "deep-nesting", "garbage"],
)
async def test_bad_frames_end_the_recording_with_a_clear_error(tmp_path, frame, message):
    recorder, kinds = await _record(tmp_path, _send(frame))
    result = recorder.result()
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert message in result.detail
    assert kinds == ["runtime", "state"]  # what came before is kept, whole


async def test_message_past_the_size_limit(tmp_path):
    big = pb.ServerMessage()
    big.event.content = "x" * (2 * 1024 * 1024)
    recorder, kinds = await _record(tmp_path, _send(encode_server_message(big)),
                                    max_message_size=1024 * 1024)  # fmt: skip
    assert recorder.result().outcome is Outcome.PROTOCOL_ERROR
    assert "limit" in recorder.result().detail
    assert kinds == ["runtime", "state"]


async def test_a_silent_server_is_given_up_on(tmp_path):
    async def silent(ws):
        await trio.sleep_forever()

    recorder, kinds = await _record(tmp_path, silent, idle_timeout=0.3)
    assert recorder.result().outcome is Outcome.SERVER_SILENT
    assert kinds == ["runtime", "state"]


async def test_a_flooding_server_cannot_exhaust_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_module, "QUEUE_BYTES", 1024 * 1024)
    event = pb.ServerMessage()
    event.event.type.name = "Flood"
    event.event.content = "y" * 60_000
    frame = encode_server_message(event)
    sent = 0

    async def flood(ws):
        nonlocal sent
        for _ in range(1500):  # ~90 MB as fast as the socket takes it
            await ws.send_message(frame)
            sent += 1
        await ws.aclose()

    path = tmp_path / "flood.mock"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve, flood)
            recorder = Recorder(f"ws://127.0.0.1:{server.port}/introspect", path, events=False)
            original = recorder._write_batch

            def slow(batch):
                import time

                time.sleep(0.001 * len(batch))  # a disk slower than the network
                original(batch)

            recorder._write_batch = slow
            await recorder.run()
            nursery.cancel_scope.cancel()
    assert recorder.peak_queued_bytes <= 1024 * 1024 + len(frame)
    assert recorder.result().outcome is Outcome.SERVER_CLOSED
    assert recorder.stats.events == sent == 1500  # bounded, yet nothing lost


class FullDisk:
    """A file that takes `capacity` bytes, then fails like a full disk."""

    def __init__(self, path, capacity: int) -> None:
        self.file = open(path, "wb")  # noqa: SIM115
        self.capacity = capacity

    def write(self, data: bytes) -> int:
        room = self.capacity - self.file.tell()
        if len(data) > room:
            self.file.write(data[:room])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


async def test_a_full_disk_stops_the_recording_and_keeps_what_was_written(tmp_path):
    event = pb.ServerMessage()
    event.event.type.name = "E"
    event.event.content = "z" * 1000
    frame = encode_server_message(event)

    async def steady(ws):
        for _ in range(200):
            await ws.send_message(frame)
        await trio.sleep_forever()

    path = tmp_path / "full.mock"
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve, steady)
            recorder = Recorder(f"ws://127.0.0.1:{server.port}/introspect", path, events=False,
                                opener=lambda: FullDisk(path, capacity=50_000))  # fmt: skip
            await recorder.run()
            nursery.cancel_scope.cancel()
    result = recorder.result()
    assert result.outcome is Outcome.WRITE_FAILED
    assert "No space left" in result.detail
    with RecordingReader(path) as reader:
        records = sum(1 for _ in reader)
        assert reader.checksum_failures == 0
        assert reader.truncated  # the record the disk cut off is reported, not misread
    assert records == recorder.stats.records > 40


# --------------------------------------------- messages that parsing would expand

HOSTILE_STATE = empty_connections_state(1_000_000)  # 2 MB: a million Connection objects parsed


def _then(*frames: bytes, close: bool = True):
    async def behaviour(ws):
        for frame in frames:
            await ws.send_message(frame)
        if close:
            await ws.aclose()
        else:
            await trio.sleep_forever()

    return behaviour


async def _client_receives(behaviour, count: int, **options) -> list[Received]:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve, behaviour)
            async with connect(f"ws://127.0.0.1:{server.port}/introspect", **options) as client:
                received = [await client.receive() for _ in range(count)]
            nursery.cancel_scope.cancel()
    return received


async def test_the_client_hands_over_a_message_over_its_limits_unparsed():
    received = await _client_receives(_then(encode_frame(HOSTILE_STATE), close=False), 3)
    hostile = received[2]
    assert hostile.skipped_kind == "state" and hostile.kind == ""
    assert "more than 40,000 connections" in hostile.skipped
    assert hostile.message.ByteSize() == 0  # nothing was built from it
    assert hostile.data == HOSTILE_STATE  # its bytes, as received
    assert [r.kind for r in received[:2]] == ["runtime", "state"]


async def test_the_clients_limits_are_its_own_to_set():
    big = empty_connections_state(50_000)
    received = await _client_receives(_then(encode_frame(big), close=False), 3,
                                      limits=RecordLimits(max_connections=50_000))  # fmt: skip
    assert not received[2].skipped
    assert len(received[2].message.state.subsystems.connections) == 50_000


async def test_a_message_over_the_limits_is_recorded_as_received(tmp_path):
    later = pb.ServerMessage()
    later.state.instant_ts = 2
    recorder, kinds = await _record(
        tmp_path, _then(encode_frame(HOSTILE_STATE), encode_server_message(later))
    )
    assert recorder.result().outcome is Outcome.SERVER_CLOSED
    assert recorder.over_limit == 1 and recorder.stats.snapshots == 3
    assert kinds == ["runtime", "state", "state"]  # readers skip it, with a notice
    with RecordingReader(tmp_path / "hostile.mock", limits=None) as reader:
        assert [r.data for r in reader][2] == HOSTILE_STATE  # written whole, byte for byte


async def test_watch_says_what_it_skipped_and_goes_on():
    from libp2p_introspection.client.watch import watch

    lines: list[dict] = []
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_serve, _then(encode_frame(HOSTILE_STATE), close=False))
            await watch(f"ws://127.0.0.1:{server.port}/introspect", count=2, events=False,
                        emit=lines.append)  # fmt: skip
            nursery.cancel_scope.cancel()
    assert [line["kind"] for line in lines] == ["runtime", "state", "skipped"]
    assert lines[2]["what"] == "state" and "40,000 connections" in lines[2]["reason"]
