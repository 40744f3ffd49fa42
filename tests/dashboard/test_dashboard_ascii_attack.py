"""Attacks on 9e6a66e (the dashboard's JSON texts are ASCII): every JSON answer a page
reads is made as the feed's messages are (caps.dumps), not only the feed's.

A recording given on the command line by a name that is not UTF-8 (Linux allows any
bytes: Python reads them as lone surrogates, ``\\udcff``) is named in the status. The
feed's ``hello`` carried it (escaped, ``\\udcff``), but ``GET /api/status`` (and every
other JSON answer: commands', the nodes', a connection's series) was Starlette's
JSONResponse, which encodes UTF-8 and failed: 500 Internal Server Error."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from libp2p_introspection.dashboard import Dashboard, DashboardConfig


def _get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_a_recording_whose_name_is_not_utf8_is_named_in_every_answer(
    fixtures_dir: Path, tmp_path: Path, nursery: Any
) -> None:
    path = os.path.join(os.fsencode(tmp_path), b"rec-\xff-caf\xc3\xa9.mock")
    shutil.copy(fixtures_dir / "sample-1min.mock", path)
    name = "rec-\udcff-caf\u00e9.mock"
    dashboard = await nursery.start(Dashboard(DashboardConfig(file=os.fsdecode(path), port=0)).run)
    url = dashboard.url

    async with open_websocket_url(url.replace("http", "ws", 1) + "feed",
                                  max_message_size=1 << 28) as ws:  # fmt: skip
        hello = json.loads(await ws.get_message())[0]
    assert hello["status"]["recording"]["name"] == name

    code, body = await trio.to_thread.run_sync(_get, url + "api/status")
    assert code == 200, body
    assert body.isascii()
    assert json.loads(body)["recording"]["name"] == name


def test_an_event_of_lone_surrogates_reaches_pages_as_text_they_can_be_sent() -> None:
    """Event content is JSON text from the wire, and JSON may spell a lone surrogate
    (``"\\ud800"``): parsed, it is a Python string UTF-8 cannot encode. Its message to
    pages, its stored text and the hello must still be sendable (a WebSocket text frame
    is UTF-8): escaped, as 9e6a66e makes them (before it, ``ensure_ascii=False`` left the
    surrogate in the text and sending it raised UnicodeEncodeError)."""
    from libp2p_introspection.dashboard.model import DashboardModel
    from libp2p_introspection.dashboard.store import Store
    from libp2p_introspection.protocol import pb

    model = DashboardModel(Store())
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    content = '{"k":"\\ud800","peerIds":["\\udfff"],"messageType":"\\ud83d"}'
    model.feed_event(pb.Event(type=pb.EventType(name="InboundDHTQuery"), ts=1, content=content))
    texts = [*sent, *(e.text for e in model.store.stored_events()), model.hello()]
    for text in texts:
        text.encode("utf-8")  # a text frame
    event = json.loads(sent[0])["e"]
    assert event["content"] == {"k": "\ud800", "peerIds": ["\udfff"], "messageType": "\ud83d"}
    assert event["query"]["peers"] == ["\udfff"]


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_a_command_whose_url_spells_a_lone_surrogate_is_refused(nursery: Any) -> None:
    """A command's JSON body may spell a lone surrogate (``"\\ud800"``) in its URL. No
    client can send such a URL (the feed said "bad URL" and kept retrying), and before
    304290e the command was carried out and then answered with a 500 (Starlette's UTF-8
    JSONResponse); once followed, it was in the status, and the dashboard's answer to a
    protocol client at the wrong port ("not an endpoint; the endpoint it follows is
    ...", a UTF-8 text) was a 500 too. Refused now, as any text that is not a URL, and
    the dashboard keeps following what it followed."""
    config = DashboardConfig(url="ws://127.0.0.1:1/introspect", port=0)  # nothing listens
    dashboard = await nursery.start(Dashboard(config).run)
    body = json.dumps({"url": "ws://127.0.0.1:1/\ud800"}).encode()  # ASCII: "\\ud800"
    for path in ("api/connect", "api/nodes/add"):
        code, answer = await trio.to_thread.run_sync(_post, dashboard.url + path, body)
        assert code == 400, (path, answer)
        assert answer.isascii()
        refused = json.loads(answer)
        assert refused["ok"] is False and "lone surrogate" in refused["error"]
    code, answer = await trio.to_thread.run_sync(_get, dashboard.url + "api/status")
    assert code == 200, answer
    assert json.loads(answer)["url"] == "ws://127.0.0.1:1/introspect"
    # A protocol client at the dashboard's port: told where the endpoint is (404).
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(dashboard.url.replace("http", "ws", 1) + "introspect"):
            pass
    assert info.value.status_code == 404
    assert b"ws://127.0.0.1:1/introspect" in (info.value.body or b"")
