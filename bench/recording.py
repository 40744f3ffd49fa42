"""Recording and inspection throughput (MB/s) against plain file I/O of the same size.

The recording: the ``Runtime``, then snapshots of the synthetic node at
1,000 x 10 (about 1 MB each) with 20 events between consecutive snapshots,
as ``record`` stores them; about 30 MB (10 MB with ``--quick``).

* ``record``: what the recorder does with every message it received, in its
  writer thread (``Recorder._write_batch``: one record per message with the
  checksum its frame carried, each written whole and flushed, counted by
  kind), into a new file.
  Baseline: writing the same number of bytes to a new file with plain
  sequential 1 MiB ``write`` calls.
* ``inspect``: ``libp2p-introspect inspect``'s summary (``summarize``: read
  every record, check its checksum, walk it against the caps, read what the
  summary shows). Baseline: the format's own floor, what nothing that checks
  a recording can skip: reading the same file record by record and computing
  every record's FNV-1a checksum (``framing.fnv1a32``, the C function the
  reader calls), nothing else.

Both go through the page cache (the files are fresh and fit in memory). Runs
alternate subject and baseline; target: ratio >= 0.5.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from bench.common import Mode, Result, interleaved, median, timed
from libp2p_introspection.client.inspect_file import summarize
from libp2p_introspection.client.recorder import Recorder
from libp2p_introspection.protocol import events as event_specs
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.events import build_event
from libp2p_introspection.protocol.framing import fnv1a32
from libp2p_introspection.protocol.recording import RecordingWriter
from libp2p_introspection.protocol.session import EventItem
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

CHUNK = 1024 * 1024
#: A record's header (PROTOCOL.md §2): FNV-1a 32 and length, little-endian.
RECORD_HEADER = struct.Struct("<II")


def _messages(snapshots: int) -> list[bytes]:
    """Serialized ServerMessages, as the recorder receives them (frame headers removed)."""
    clock = [1_700_000_000_000]
    source = SyntheticSource(
        SyntheticOptions(connections=1_000, streams=10, churn=0.0, clock_ms=lambda: clock[0])
    )
    server = IntrospectionServer(source, ServerConfig(port=0))
    hub = server.hub
    messages = [hub.runtime_frame[12:]]
    for s in range(snapshots):
        clock[0] += 1_000
        messages.append(_state_message(source))
        for e in range(20):
            event = build_event(
                event_specs.STREAM_OPENED,
                clock[0] + e,
                {
                    "peerId": "12D3KooWGzh3Xb1JeKqkzFcKd8y6vsA2tPsn4bRUHw2Z5mz8JvnT",
                    "connId": f"{s:016x}",
                    "streamId": f"{e:016x}",
                    "protocol": "/meshsub/1.1.0",
                    "direction": "outbound",
                    "openTs": clock[0],
                },
            )
            messages.append(EventItem.encode(event).frame[12:])
    return messages


def _state_message(source: SyntheticSource) -> bytes:
    message = pb.ServerMessage()
    message.version.version = 1
    message.state.ParseFromString(source.encoded_state())
    return message.SerializeToString()


def _plain_write(path: Path, size: int) -> None:
    block = b"\x00" * CHUNK
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(block if left >= CHUNK else block[:left])
            left -= CHUNK


def checksum_floor(path: Path) -> int:
    """Every record of the recording at ``path`` read and its checksum checked, nothing
    else: the format's floor for any reader that checks a file. Returns the records whose
    checksum matched."""
    good = 0
    with open(path, "rb") as f:
        f.read(4)  # the file version
        while header := f.read(8):
            checksum, length = RECORD_HEADER.unpack(header)
            good += fnv1a32(f.read(length)) == checksum
    return good


def record_batch(path: Path, batch: list[tuple[bytes, int]]) -> None:
    """What the recorder does with ``batch`` (``(ServerMessage bytes, FNV-1a)`` pairs)
    once connected: open its file (the recorder opens it only then, so that a failed
    connection destroys nothing), write one record per message, close."""
    recorder = Recorder("ws://127.0.0.1:1/introspect", path)
    recorder.writer = RecordingWriter(path)
    recorder._write_batch(batch)
    recorder.writer.close()


def run(mode: Mode) -> list[Result]:
    messages = _messages(mode.pick(30, 10, 1))
    repeats = mode.pick(11, 5, 1)
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        recorded = Path(tmp) / "recorded.mock"
        plain = Path(tmp) / "plain.bin"

        # The checksums come with the frames: the client verified them on arrival.
        batch = [(message, fnv1a32(message)) for message in messages]

        def record() -> None:
            record_batch(recorded, batch)

        record()
        size = os.path.getsize(recorded)
        summary = summarize(recorded)
        assert summary["records"] == len(messages), summary
        assert checksum_floor(recorded) == len(messages)

        w_subject, w_base = interleaved(
            lambda: timed(record), lambda: timed(lambda: _plain_write(plain, size)), repeats
        )
        r_subject, r_base = interleaved(
            lambda: timed(lambda: summarize(recorded)),
            lambda: timed(lambda: checksum_floor(recorded)),
            repeats,
        )
    mb = size / 1e6
    results = []
    for name, subject, base, target in (
        ("record (write a recording)", w_subject, w_base, ">= 0.5x plain I/O"),
        ("inspect (summarize a recording)", r_subject, r_base, ">= 0.5x checksums only"),
    ):
        value = mb / median(subject)
        baseline = mb / median(base)
        results.append(
            Result(
                name,
                value,
                "MB/s",
                baseline,
                value / baseline,
                target,
                value / baseline >= 0.5,
                note=f"{mb:.0f} MB, {len(messages)} records" if name.startswith("record") else "",
                extra={"subject_s": subject, "baseline_s": base},
            )
        )
    return results
