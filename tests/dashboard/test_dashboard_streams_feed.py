"""A page says on its feed which page of streams it shows; each snapshot then comes with
that page's answer (app.py's ``streams?QUERY``, streams_api.py's ``streams`` message),
in-process against a replayed recording (test_dashboard_app.py's ``live``): real sockets
on loopback, every wait bounded."""

from __future__ import annotations

import json
from typing import Any

import trio
from test_dashboard_app import http, live  # noqa: F401 - the fixture
from trio_websocket import open_websocket_url

QUERY = "page=2&size=1&sort=peer&dir=desc&status=OPEN"


async def _next_with_snapshot(ws: Any) -> list[dict[str, Any]]:
    """The next batch that holds a snapshot (or delta)."""
    while True:
        batch = json.loads(await ws.get_message())
        if any(m["t"] in ("snapshot", "delta") for m in batch):
            return batch


def _mailbox(dashboard: Any) -> Any:
    (mailbox,) = dashboard.model.hub.mailboxes
    return mailbox


async def _until(predicate: Any) -> None:
    while not predicate():
        await trio.sleep(0.01)


async def test_each_snapshot_comes_with_the_page_of_streams_the_page_shows(live):  # noqa: F811
    _, dashboard = live
    ws_url = dashboard.url.replace("http://", "ws://") + "feed"
    with trio.fail_after(30):
        async with open_websocket_url(ws_url, max_message_size=64 * 1024 * 1024) as ws:
            assert json.loads(await ws.get_message())[0]["t"] == "hello"
            await ws.send_message(f"streams?{QUERY}")
            await _until(lambda: _mailbox(dashboard).streams is not None)
            for _ in range(3):  # right after each snapshot, in the same message
                batch = await _next_with_snapshot(ws)
                kinds = [m["t"] for m in batch]
                at = max(i for i, k in enumerate(kinds) if k in ("snapshot", "delta"))
                assert kinds[at + 1] == "streams", kinds
                pushed = batch[at + 1]
                assert pushed["q"] == QUERY
                ts = batch[at]["summary"]["ts"]
                answer = pushed["answer"]
                assert answer["ts"] == ts and answer["page"] == min(2, answer["last_page"]) and len(answer["data"]) <= 1
                assert all(row["status"] == "OPEN" for row in answer["data"])
                # The very answer GET /api/streams gives for that moment and query.
                status, fetched = await http(f"{dashboard.url}api/streams?ts={ts}&{QUERY}")
                assert status == 200 and fetched == answer
            # "streams": it shows none now; no more are sent.
            await ws.send_message("streams")
            await _until(lambda: _mailbox(dashboard).streams is None)
            for _ in range(3):
                batch = await _next_with_snapshot(ws)
                assert "streams" not in [m["t"] for m in batch]


async def test_a_bad_feed_query_is_refused_and_the_feed_goes_on(live):  # noqa: F811
    _, dashboard = live
    ws_url = dashboard.url.replace("http://", "ws://") + "feed"
    bad = [
        "size=100000",  # over MAX_PAGE_SIZE
        "ts=5",  # the moment is the snapshot's, never the page's
        "nope=1",
        "page=1&page=2",
        "sort=__class__",
        "dir=sideways",
        "page=-1",
        "find=%ff",  # not UTF-8
        "find=" + "a" * 9000,  # over MAX_FEED_QUERY
        "page=1&" * 20,
    ]
    with trio.fail_after(60):
        async with open_websocket_url(ws_url, max_message_size=64 * 1024 * 1024) as ws:
            assert json.loads(await ws.get_message())[0]["t"] == "hello"
            for text in bad:
                await ws.send_message("streams?page=1")
                await _until(lambda: _mailbox(dashboard).streams is not None)
                await ws.send_message(f"streams?{text}")
                await _until(lambda: _mailbox(dashboard).streams is None)
                batch = await _next_with_snapshot(ws)  # the feed goes on, with no answer
                batch = await _next_with_snapshot(ws)
                assert "streams" not in [m["t"] for m in batch], text
            # A good one after them is answered again.
            await ws.send_message("streams?sort=in")
            await _until(lambda: _mailbox(dashboard).streams is not None)
            await _next_with_snapshot(ws)
            batch = await _next_with_snapshot(ws)
            assert [m["q"] for m in batch if m["t"] == "streams"] == ["sort=in"]
