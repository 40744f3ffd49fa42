"""What a page is sent of each snapshot (dashboard/page_json.py): the stored snapshot with
its streams packed, a fraction of the text, and nothing a view shows lost."""

from __future__ import annotations

import json
from typing import Any

from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

#: What a view shows of a stream (app.js's streamRows), all of it kept.
SHOWN = ("proto", "role", "status", "open", "close", "in", "out", "bwIn", "bwOut")


def _messages(connections: int, streams: int, snapshots: int = 2) -> tuple[list[Any], Store]:
    source = SyntheticSource(SyntheticOptions(connections=connections, streams=streams, seed=3))
    hub = BrowserHub()
    sent: list[str] = []
    hub.broadcast = sent.append  # type: ignore[method-assign]
    model = DashboardModel(Store(), hub)
    for _ in range(snapshots):
        model.feed_state(source.state())
    return [json.loads(text) for text in sent if text.startswith('{"t":"snapshot"')], model.store


def _unpack(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each connection's streams, read from PAGE_SNAPSHOT as its module doc says."""
    strs = data["strs"]
    packed = json.loads(data["streams"])
    out = {}
    for conn, st in zip(data["conns"], packed, strict=True):
        rows = []
        for i in range(0, len(st), 9):
            proto, role, status, age, close, bytes_in, bytes_out, bw_in, bw_out = st[i : i + 9]
            rows.append({
                "proto": strs[proto], "role": strs[role], "status": strs[status],
                "open": 0 if age is None else data["ts"] - age, "close": close,
                "in": bytes_in, "out": bytes_out, "bwIn": bw_in, "bwOut": bw_out,
            })  # fmt: skip
        assert len(rows) == conn["ns"]
        out[conn["id"]] = rows
    return out


def test_a_big_snapshot_reaches_the_page_in_under_half_its_stored_text():
    messages, store = _messages(1_000, 10)
    latest = store.latest
    assert latest is not None
    page_text = json.dumps(messages[-1]["data"], separators=(",", ":"))
    assert len(page_text) < 0.5 * len(latest.text), (len(page_text), len(latest.text))
    # No connection carries its streams as objects.
    assert all("streams" not in c for c in messages[-1]["data"]["conns"])


def test_the_packed_snapshot_keeps_everything_the_views_show():
    messages, store = _messages(300, 4, snapshots=3)
    data = messages[-1]["data"]
    stored = store.latest.data  # type: ignore[union-attr]
    assert data["ts"] == stored["ts"]
    lists = data["lists"]
    streams = _unpack(data)
    assert len(data["conns"]) == len(stored["conns"])
    for page_conn, conn in zip(data["conns"], stored["conns"], strict=True):
        # The connection's own fields, as stored (its peer's protocols by reference).
        info = page_conn.get("peerInfo")
        if info is not None:
            info = {**info, "protocols": lists[info["protocols"]]}
        assert {k: v for k, v in page_conn.items() if k not in ("ns", "sp", "peerInfo")} == {
            k: v for k, v in conn.items() if k not in ("streams", "peerInfo")
        }
        assert info == conn["peerInfo"]
        assert lists[page_conn["sp"]] == list(dict.fromkeys(s["proto"] for s in conn["streams"]))
        assert streams[conn["id"]] == [{k: s[k] for k in SHOWN} for s in conn["streams"]]
    # Everything but the connections is as stored.
    rest = {k: v for k, v in data.items() if k not in ("conns", "lists", "strs", "streams")}
    assert rest == {k: v for k, v in stored.items() if k != "conns"}


def test_a_snapshot_without_streams_or_peers_packs_too():
    messages, _ = _messages(3, 0)
    data = messages[-1]["data"]
    assert data["streams"] == "[[],[],[]]" and data["strs"] == []
    assert all(c["ns"] == 0 and data["lists"][c["sp"]] == [] for c in data["conns"])
