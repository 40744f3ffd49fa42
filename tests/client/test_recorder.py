"""The recorder against live servers: a demo network and replays, in both modes.

A recording ended by the server going away holds exactly what the server
wrote (TCP keeps order; the close comes last), so its counts are checked
against the server's own per-session count of frames written.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import trio
from stub_source_for_client import FloodSource

from libp2p_introspection.client.inspect_file import summarize
from libp2p_introspection.client.recorder import Outcome, Recorder
from libp2p_introspection.protocol.recording import RecordingReader
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.replay import ReplaySource

LIMIT = 60


async def _record_until_server_stops(source, tmp_path, mode, *, snapshots=6, interval_ms=100):
    """Run a server and a recorder; stop the server once the file holds ``snapshots``."""
    path = tmp_path / f"{mode}.mock"
    server = IntrospectionServer(source, ServerConfig(port=0, interval_ms=interval_ms))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as server_nursery:
                await server_nursery.start(server.run)
                recorder = Recorder(server.url, path, mode=mode, events=True)
                outer.start_soon(recorder.run)
                while recorder.stats.snapshots < snapshots:
                    await trio.sleep(0.02)
                server_nursery.cancel_scope.cancel()  # the server goes away
    assert recorder.result().outcome is Outcome.SERVER_CLOSED
    (handle,) = server.closed_sessions
    return path, recorder, handle


def _file_kinds(path) -> Counter[str]:
    summary = summarize(path)
    assert summary["checksum_failures"] == 0 and not summary["truncated"]
    return Counter({k: v for k, v in summary["kinds"].items() if v})


@pytest.mark.parametrize("mode", ["pull", "push"])
async def test_record_a_live_demo_network(tmp_path, mode):
    from libp2p_introspection.demo import DemoNetwork, DemoOptions
    from libp2p_introspection.introspector import HostIntrospector

    introspectors = []
    options = DemoOptions(
        nodes=3, churn=False, seed=3, work_rate=6.0,
        on_observed_ready=lambda n: introspectors.append(HostIntrospector(n.host, dht=n.dht)),
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(DemoNetwork(options).run)
        path, _, handle = await _record_until_server_stops(
            introspectors[0], tmp_path, mode, snapshots=8
        )
        nursery.cancel_scope.cancel()
    kinds = _file_kinds(path)
    assert kinds == +handle.sent  # exactly what the server wrote, kind by kind
    assert kinds["runtime"] == 1 and kinds["state"] >= 8
    assert kinds["response"] == (2 if mode == "push" else 1)
    summary = summarize(path)
    assert summary["runtime"]["implementation"] == "py-libp2p"
    assert summary["states"]["last_connections"] >= 1


@pytest.mark.parametrize("mode", ["pull", "push"])
async def test_record_a_replay(tmp_path, fixtures_dir, mode):
    source = ReplaySource(fixtures_dir / "sample-1min.mock", speed=40)
    path, _, handle = await _record_until_server_stops(source, tmp_path, mode, snapshots=10)
    kinds = _file_kinds(path)
    assert kinds == +handle.sent
    assert kinds["state"] >= 10 and kinds["event"] > 0
    assert summarize(path)["runtime"]["implementation"] == "go-libp2p"


async def test_replay_recorded_in_push_mode_keeps_the_fixture_order(tmp_path, fixtures_dir):
    """From the first State after subscribing, states and events come in fixture order,
    state payloads byte for byte."""
    fixture = fixtures_dir / "sample-1min.mock"
    source = ReplaySource(fixture, speed=25)
    path = tmp_path / "replayed.mock"
    server = IntrospectionServer(source, ServerConfig(port=0))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            recorder = Recorder(server.url, path, mode="push", events=True)
            with trio.move_on_after(LIMIT - 10):
                async with trio.open_nursery() as inner:
                    inner.start_soon(recorder.run)
                    while source.passes_done < 1:
                        await trio.sleep(0.05)
                    await trio.sleep(0.3)  # let the last releases arrive
                    inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()

    def items(file, after_subscription: bool):
        out, subscribed, responses = [], not after_subscription, 0
        with RecordingReader(file) as reader:
            for record in reader:
                message = record.message()
                kind = message.WhichOneof("payload")
                if kind == "response":
                    responses += 1
                    subscribed = subscribed or responses == 2
                elif kind == "notice":
                    pytest.fail("the server dropped data: the comparison would be void")
                elif kind == "state" and subscribed:
                    out.append(("state", record.data))
                elif kind == "event" and subscribed and out:
                    e = message.event
                    out.append(("event", (e.ts, e.type.name, e.content)))
        return out

    recorded = items(path, after_subscription=True)
    expected = items(fixture, after_subscription=False)
    assert recorded and recorded[0][0] == "state"
    start = expected.index(recorded[0])
    assert recorded == expected[start : start + len(recorded)]
    assert len(recorded) > 100


async def test_recorder_pauses_push_when_writing_falls_behind(tmp_path):
    """A slow disk: the write queue passes its high-water mark, the recorder pauses
    the push streams, and resumes once it catches up; nothing received is lost."""
    source = FloodSource()
    path = tmp_path / "slow.mock"
    server = IntrospectionServer(source, ServerConfig(port=0, interval_ms=50))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            # count 3: a 20,000 events/s flood on a slow disk trails snapshots by its
            # backlog (nothing is dropped), so later ones can take a minute to come here.
            recorder = Recorder(server.url, path, mode="pull", events=True, count=3,
                                high_water=20, low_water=5)  # fmt: skip
            original = recorder._write

            def slow_write(data, checksum):
                time.sleep(0.002)  # a slow disk, in the writer thread
                original(data, checksum)

            recorder._write = slow_write
            nursery.start_soon(source.flood)
            await recorder.run()
            nursery.cancel_scope.cancel()
    assert recorder.result().outcome is Outcome.COMPLETED
    assert recorder.stats.pauses >= 1 and recorder.stats.resumes >= 1
    summary = summarize(path)
    assert summary["records"] == recorder.stats.records
    assert summary["kinds"]["state"] == 3
    assert summary["kinds"]["event"] == recorder.stats.events > 0


async def test_count_is_exact_when_snapshots_arrive_faster_than_they_are_written(tmp_path):
    """Push mode, 10 ms snapshots, a slow disk: batches hold several snapshots, and
    the file still ends with the count-th (nothing received after it is kept)."""
    source = FloodSource()
    path = tmp_path / "exact.mock"
    server = IntrospectionServer(source, ServerConfig(port=0, interval_ms=10))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            recorder = Recorder(server.url, path, mode="push", events=True, count=5)
            original = recorder._write

            def slow_write(data, checksum):
                time.sleep(0.001)  # a slow disk, in the writer thread
                original(data, checksum)

            recorder._write = slow_write
            nursery.start_soon(source.flood)
            await recorder.run()
            nursery.cancel_scope.cancel()
    assert recorder.result().outcome is Outcome.COMPLETED
    assert recorder.stats.snapshots == 5
    with RecordingReader(path) as reader:
        kinds = [record.message().WhichOneof("payload") for record in reader]
    assert kinds.count("state") == 5 and kinds[-1] == "state"


def test_the_summary_counts_in_words():
    """"1 response", not "1 responses" (the newcomer's report)."""
    from libp2p_introspection.client.recorder import RecordResult, RecordStats

    stats = RecordStats(records=3, snapshots=1, events=0, responses=1, notices=1, runtimes=1,
                        bytes=1, started=time.monotonic())  # fmt: skip
    text = RecordResult(Outcome.COMPLETED, stats, "x.mock").summary()
    assert text.startswith(
        "x.mock: 3 records (1 snapshot, 0 events, 1 response, 1 notice), 1 byte in "
    ), text
    assert text.endswith("; completed")
