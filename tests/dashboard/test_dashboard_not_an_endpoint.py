"""A protocol client sent to the dashboard's port is told it reached the dashboard.

In-process dashboard on loopback, a real trio-websocket client, every wait bounded.
"""

from __future__ import annotations

import trio
from trio_websocket import ConnectionRejected

from libp2p_introspection.client import connect
from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.feed import describe_failure

LIMIT = 20
FOLLOWED = "ws://127.0.0.1:1/introspect"  # nothing listens there; the feed just retries


async def test_a_websocket_to_any_path_but_feed_is_refused_with_what_this_is(nursery):
    with trio.fail_after(LIMIT):
        dashboard = await nursery.start(Dashboard(DashboardConfig(url=FOLLOWED, port=0)).run)
        here = dashboard.url
        for path in ("/introspect", "/", "/anything/else"):
            rejected: ConnectionRejected | None = None
            try:
                async with connect(here.replace("http://", "ws://").rstrip("/") + path):
                    pass
            except ConnectionRejected as exc:
                rejected = exc
            assert rejected is not None, path
            assert rejected.status_code == 404
            text = (rejected.body or b"").decode()
            assert text.startswith(f"this is the libp2p-introspection dashboard ({here})")
            assert "not an introspection endpoint" in text
            assert f"the endpoint it follows is {FOLLOWED}" in text
            # What the dashboard's own feed shows when it is pointed at a dashboard.
            shown = describe_failure(rejected)
            assert shown is not None and "HTTP 404" in shown
            assert "this is the libp2p-introspection dashboard" in shown


def test_a_refusal_without_a_body_is_described_as_before():
    assert describe_failure(ConnectionRejected(403, (), None)) == (
        "the server refused the session (HTTP 403)"
    )


async def test_a_dashboard_following_a_dashboard_says_so_in_its_log(nursery, caplog):
    """``dashboard URL`` with URL a dashboard's port: the CLI says it at once, in a
    WARNING naming what it reached (``watch`` says it too), not only in the page."""
    import logging

    caplog.set_level(logging.INFO, logger="libp2p_introspection.dashboard.feed")
    with trio.fail_after(LIMIT):
        first = await nursery.start(Dashboard(DashboardConfig(url=FOLLOWED, port=0)).run)
        wrong = first.url.replace("http://", "ws://").rstrip("/") + "/introspect"
        await nursery.start(Dashboard(DashboardConfig(url=wrong, port=0)).run)

        def told() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "cannot follow" in r.getMessage()]  # fmt: skip

        while not told():
            await trio.sleep(0.05)
        (said,) = told()
        assert said.startswith(f"cannot follow {wrong}: the server refused the session (HTTP 404)")
        assert "not an introspection endpoint" in said
        # Its retries stay at INFO: said once.
        while sum("retrying" in r.getMessage() and wrong in r.getMessage()
                  for r in caplog.records) < 2:  # fmt: skip
            await trio.sleep(0.05)
        assert len(told()) == 1


async def test_a_truncated_recording_is_said_in_the_log_with_its_offset(nursery, caplog, tmp_path):
    """``dashboard --file`` of a recording cut short says so where the user started it
    (as ``inspect`` does: "truncated at offset N"), not only in the page."""
    import logging

    from full_node import write_full_recording

    from libp2p_introspection.protocol.recording import RecordingReader

    path = write_full_recording(tmp_path / "whole.mock")
    data = path.read_bytes()
    cut = tmp_path / "cut.mock"
    cut.write_bytes(data[:-7])
    reader = RecordingReader(cut)
    for _ in reader:
        pass
    assert reader.truncated and reader.truncated_at is not None
    caplog.set_level(logging.WARNING, logger="libp2p_introspection.dashboard.server")
    with trio.fail_after(LIMIT):
        await nursery.start(Dashboard(DashboardConfig(url=FOLLOWED, port=0, file=str(cut))).run)
    said = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert said == [
        f"{cut}: truncated at offset {reader.truncated_at} (the tail was cut off); showing "
        f"the {reader.records} records before it"
    ]
