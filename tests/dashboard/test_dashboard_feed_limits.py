"""The dashboard's live feed facing a server whose snapshots hold more than the limits allow:
skipped unparsed, told to the page, and the pull loop goes on. Loopback, bounded waits."""

from __future__ import annotations

import contextlib

import trio
from hostile_records import empty_connections_state, normal_state, runtime
from test_dashboard_feed import Sink, wait_for
from trio_websocket import ConnectionClosed, serve_websocket

from libp2p_introspection.dashboard.feed import LiveFeed
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame


async def _pull_server(frames: list[bytes], *, task_status=trio.TASK_STATUS_IGNORED):
    """Runtime and first state on connect, then the next of ``frames`` per ready signal."""

    async def handler(request):
        ws = await request.accept()
        pending = list(frames)
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(encode_frame(runtime()))
            await ws.send_message(encode_frame(normal_state(1_000)))
            while True:
                command = pb.ClientCommand.FromString(await ws.get_message())
                is_ready = (command.command == pb.ClientCommand.REQUEST
                            and command.source == pb.ClientCommand.STATE)  # fmt: skip
                if is_ready and pending:
                    await ws.send_message(encode_frame(pending.pop(0)))

    await serve_websocket(handler, "127.0.0.1", 0, None, max_message_size=1 << 26,
                          task_status=task_status)  # fmt: skip


async def test_a_snapshot_over_the_limits_is_skipped_and_the_pull_loop_goes_on():
    frames = [empty_connections_state(1_000_000, 2_000), normal_state(3_000)]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_pull_server, frames)
            sink = Sink()
            feed = LiveFeed(f"ws://127.0.0.1:{server.port}/introspect", sink)
            await nursery.start(feed.run)
            # Only a new ready signal after the skipped snapshot brings the next one.
            await wait_for(lambda: len(sink.states) == 2, what="the snapshot after the skipped one")
            assert [s.instant_ts for s in sink.states] == [1_000, 3_000]
            assert feed.over_limit == 1
            assert "more than 40,000 connections" in feed.over_limit_reason
            nursery.cancel_scope.cancel()


async def test_the_page_is_told_through_the_status():
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(_pull_server, [empty_connections_state(50_000, 2_000)])
            model = DashboardModel(Store())
            feed = LiveFeed(f"ws://127.0.0.1:{server.port}/introspect", model)
            model.attach_feed(feed)
            await nursery.start(feed.run)
            await wait_for(lambda: feed.over_limit == 1, what="the skipped snapshot")
            notice = model.status()["overLimit"]
            assert notice["count"] == 1
            assert notice["reason"].startswith("skipped a message from the node: a state of")
            assert len(model.store) == 1  # only the honest first snapshot was converted
            nursery.cancel_scope.cancel()
