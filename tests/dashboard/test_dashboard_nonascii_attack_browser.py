"""Attack on 9e6a66e (the dashboard's JSON texts are ASCII, other characters escaped):
the page shows every non-ASCII string as it came, accents, ``…``, CJK and characters
past U+FFFF (a surrogate pair in the escaped text) alike, in the node's header, the
Connections table and the page's parsed state, from a recording given with
``dashboard --file``; and the feed's texts the page gets are ASCII."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cli_process import running
from test_dashboard_browser import (  # noqa: F401 - the fixtures
    browser,
    page,
)

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000
WIDE = "caf\u00e9 \u2026 \u65e5\u672c \U0001f600\U00010348"


def _text(name: str) -> str:
    return f"{name} {WIDE}"


def _recording(path: Path) -> Path:
    runtime = pb.Runtime(implementation=_text("impl"), version=_text("version"),
                         platform=_text("platform"), peer_id=_text("peer"))  # fmt: skip
    event_type = runtime.event_types.add(name="Wide")
    event_type.property_types.add(name="k", type=pb.EventType.EventProperty.STRING)
    with RecordingWriter(path, close_stream=True) as writer:
        writer.write_message(pb.ServerMessage(runtime=runtime))
        for i in range(3):
            ts = START_MS + i * 1_000
            state = pb.State(instant_ts=ts, start_ts=ts - 1_000, snapshot_duration_ms=1_000)
            conn = state.subsystems.connections.add(
                id=b"\x01", peer_id=_text("conn.peer"), status=pb.ACTIVE, role=pb.INITIATOR,
                transport_id=_text("transport").encode(),
            )  # fmt: skip
            conn.endpoints.src_multiaddr = _text("src")
            conn.endpoints.dst_multiaddr = _text("dst")
            conn.attribs.multiplexer = _text("mux")
            conn.attribs.encryption = _text("sec")
            conn.timeline.open_ts = START_MS - 5_000
            conn.user_provided_tags.append(_text("tag"))
            conn.peer.agent_version = _text("agent")
            stream = conn.streams.streams.add(id=b"\x02", protocol=_text("proto"),
                                              status=pb.ACTIVE, role=pb.RESPONDER)  # fmt: skip
            stream.timeline.open_ts = START_MS - 1_000
            writer.write_message(pb.ServerMessage(state=state))
            if i == 0:
                content = json.dumps({"k": _text("event")}, ensure_ascii=False)
                writer.write_message(pb.ServerMessage(event=pb.Event(
                    type=event_type, ts=START_MS + 100, content=content)))  # fmt: skip
    return path


def test_non_ascii_strings_show_on_the_page_as_they_came(page: Any, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    recording = _recording(tmp_path / "wide.mock")
    args = ["-m", "libp2p_introspection", "dashboard", "--port", "0", "--file", str(recording)]
    texts: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda p: texts.append(p)))
    with running(args, first_line_timeout=60) as (_, url):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        page.goto(url)
        expect(page.locator("#peer-id")).to_have_text(_text("peer"))
        expect(page.locator("#runtime-impl")).to_have_text(_text("impl"))
        expect(page.locator("#runtime-version")).to_have_text(_text("version"))
        expect(page.locator("#runtime-platform")).to_have_text(_text("platform"))
        row = page.locator("#connections-table .tabulator-row").first
        expect(row.locator(".peer-cell")).to_have_attribute("title", _text("conn.peer"))
        for field in ("mux", "sec"):  # (a transport id not ASCII shows as hex: ids.py)
            expect(row.locator(f"[tabulator-field={field}]")).to_have_text(_text(field))
        conn = page.evaluate("() => window.dashboardState.view.conns[0]")
        assert conn["peer"] == _text("conn.peer")
        assert conn["src"] == _text("src") and conn["dst"] == _text("dst")
        assert conn["tags"] == [_text("tag")]
        assert conn["peerInfo"]["agent"] == _text("agent")
        page.wait_for_function("() => window.dashboardState.events.length >= 1")
        event = page.evaluate("() => window.dashboardState.events[0]")
        assert event["content"] == {"k": _text("event")}
        # The stream's protocol, as GET /api/streams answers the page.
        answer = page.evaluate("async () => (await fetch('/api/streams?size=5')).json()")
        assert [r["proto"] for r in answer["data"]] == [_text("proto")]
    assert texts and all(t.isascii() for t in texts if isinstance(t, str))
