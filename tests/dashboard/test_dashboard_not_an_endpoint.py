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
