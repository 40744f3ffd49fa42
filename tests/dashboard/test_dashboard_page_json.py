"""What a page is sent of each snapshot (dashboard/page_json.py): the stored snapshot with
its streams packed, a fraction of the text, and nothing a view shows lost."""

from __future__ import annotations

import json
from typing import Any

from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.page_json import PageFeed, pack
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.dashboard.streams_api import MAX_PAGE_SIZE, StreamQuery
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

#: What a view shows of a stream (app.js's streamRows), all of it kept.
SHOWN = ("proto", "role", "status", "open", "close", "in", "out", "bwIn", "bwOut")


def apply_delta(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """PAGE_SNAPSHOT of a PAGE_DELTA and its base, read as page_json's module doc says
    (the page's applyDelta in Python)."""
    base_lists = base["lists"]
    lists = delta["lists"]
    out_lists: list[list[str]] = []

    def listed(items: list[str]) -> int:  # into the result's own "lists"
        out_lists.append(items)
        return len(out_lists) - 1

    def rebased(conn: dict[str, Any], source: list[list[str]]) -> dict[str, Any]:
        conn = dict(conn)
        conn["sp"] = listed(source[conn["sp"]])
        if conn.get("peerInfo") is not None:
            info = conn["peerInfo"]
            conn["peerInfo"] = {**info, "protocols": listed(source[info["protocols"]])}
        return conn

    conns = []
    for entry in delta["conns"]:
        if isinstance(entry, int):
            conns.append(rebased(base["conns"][entry], base_lists))
        elif isinstance(entry, list):
            i, fields = entry
            conn = rebased(base["conns"][i], base_lists)
            for key, value in fields.items():
                if key == "sp":
                    conn["sp"] = listed(lists[value])
                elif key == "peerInfo" and value is not None:
                    conn["peerInfo"] = {**value, "protocols": listed(lists[value["protocols"]])}
                else:
                    conn[key] = value
            conns.append(conn)
        else:
            conns.append(rebased(entry, lists))
    rest = {k: v for k, v in base.items() if k not in ("conns", "lists")}
    rest.update({k: v for k, v in delta.items() if k not in ("conns", "lists")})
    return {**rest, "conns": conns, "lists": out_lists}


def _messages(
    connections: int, streams: int, snapshots: int = 2
) -> tuple[list[Any], Store, DashboardModel]:
    """Every snapshot message a page is sent, each delta applied to the one before it
    (as ``{"t": "snapshot", "data": PAGE_SNAPSHOT, "was": "delta"|"snapshot"}``)."""
    source = SyntheticSource(SyntheticOptions(connections=connections, streams=streams, seed=3))
    hub = BrowserHub()
    sent: list[str] = []
    hub.broadcast = sent.append  # type: ignore[method-assign]
    model = DashboardModel(Store(), hub)
    for _ in range(snapshots):
        model.feed_state(source.state())
    out: list[Any] = []
    for text in sent:
        message = json.loads(text)
        if message["t"] == "snapshot":
            out.append({**message, "was": "snapshot"})
        elif message["t"] == "delta":
            assert out and message["base"] == out[-1]["seq"] == message["seq"] - 1
            data = apply_delta(out[-1]["data"], message["data"])
            out.append({**message, "t": "snapshot", "data": data, "was": "delta"})
    return out, model.store, model


def _page_streams(model: DashboardModel, data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each connection's streams as the page reads them: GET /api/streams?conn= of the
    snapshot's moment (streams_api), in their order."""
    out = {}
    for conn in data["conns"]:
        query = StreamQuery(ts=data["ts"], conn=conn["id"], sort="age", size=MAX_PAGE_SIZE)
        answer = model.streams.answer(model.store, query)
        assert answer is not None and answer["ts"] == data["ts"]
        rows = sorted(answer["data"], key=lambda r: int(r["key"].rsplit(":", 1)[1]))
        assert len(rows) == conn["ns"] == answer["total"]
        out[conn["id"]] = rows
    return out


def test_a_big_snapshot_reaches_the_page_without_its_streams_in_a_third_of_its_text():
    messages, store, _ = _messages(1_000, 10, snapshots=1)
    latest = store.latest
    assert latest is not None
    page_text = json.dumps(messages[-1]["data"], separators=(",", ":"))
    # Its streams are not sent at all (the Streams tables page them: GET /api/streams).
    assert len(page_text) < 0.35 * len(latest.text), (len(page_text), len(latest.text))
    assert "streams" not in messages[-1]["data"] and "strs" not in messages[-1]["data"]
    assert all("streams" not in c for c in messages[-1]["data"]["conns"])


def test_the_packed_snapshot_keeps_everything_the_views_show():
    messages, store, model = _messages(300, 4, snapshots=3)
    data = messages[-1]["data"]
    stored = store.latest.data  # type: ignore[union-attr]
    assert data["ts"] == stored["ts"]
    lists = data["lists"]
    streams = _page_streams(model, data)
    assert len(data["conns"]) == len(stored["conns"])
    for page_conn, conn in zip(data["conns"], stored["conns"], strict=True):
        # The connection's own fields, as stored (its peer's protocols by reference).
        info = page_conn.get("peerInfo")
        if info is not None:
            info = {**info, "protocols": lists[info["protocols"]]}
        assert {k: v for k, v in page_conn.items() if k not in ("ns", "sp", "peerInfo")} == {
            k: v for k, v in conn.items() if k not in ("streams", "peerInfo", "inPkts", "outPkts")
        }
        assert info == conn["peerInfo"]
        assert lists[page_conn["sp"]] == list(dict.fromkeys(s["proto"] for s in conn["streams"]))
        ts = stored["ts"]
        assert streams[conn["id"]] == [
            {"key": f"{conn['id']}:{k}", "conn": conn["id"], "peer": conn["peer"],
             **{f: s[f] for f in SHOWN if f not in ("open", "close")},
             "age": ((s["close"] if s["status"] == "CLOSED" and s["close"] else ts) - s["open"])
             if s["open"] else 0}
            for k, s in enumerate(conn["streams"])
        ]  # fmt: skip
    # Everything but the connections is as stored.
    rest = {k: v for k, v in data.items() if k not in ("conns", "lists")}
    assert rest == {k: v for k, v in stored.items() if k != "conns"}


def test_a_snapshot_without_streams_or_peers_packs_too():
    messages, _, _ = _messages(3, 0)
    data = messages[-1]["data"]
    assert "streams" not in data
    assert all(c["ns"] == 0 and data["lists"][c["sp"]] == [] for c in data["conns"])


def _sent(model_source: tuple[DashboardModel, SyntheticSource], n: int) -> list[Any]:
    model, source = model_source
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    for _ in range(n):
        model.feed_state(source.state())
    return [json.loads(t) for t in sent if t.startswith(('{"t":"snapshot"', '{"t":"delta"'))]


def test_after_the_first_snapshot_a_page_is_sent_deltas_of_a_fraction_of_the_text():
    source = SyntheticSource(SyntheticOptions(connections=1_000, streams=10, seed=3))
    model = DashboardModel(Store(), BrowserHub())
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    for _ in range(3):
        model.feed_state(source.state())
    kinds = [json.loads(t)["t"] for t in sent]
    assert kinds == ["snapshot", "delta", "delta"]
    whole = len(json.dumps(pack(model.store.latest.data), separators=(",", ":")))  # type: ignore[union-attr]
    delta = json.loads(sent[-1])["data"]
    assert len(sent[-1]) < 0.75 * whole, (len(sent[-1]), whole)
    # Its connections' part: what moved (their counters), a fraction of theirs.
    conns_text = len(json.dumps(delta["conns"], separators=(",", ":")))
    whole_conns = len(json.dumps(pack(model.store.latest.data)["conns"], separators=(",", ":")))  # type: ignore[union-attr]
    assert conns_text < 0.25 * whole_conns, (conns_text, whole_conns)


def test_every_delta_applied_to_its_base_is_the_snapshot_stored():
    # Churn: connections come, close and go; every one applied in turn is exact.
    source = SyntheticSource(
        SyntheticOptions(connections=200, streams=3, seed=5, churn=0.1)
    )
    model = DashboardModel(Store(), BrowserHub(), closed_ttl_ms=1_500)
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    page: dict[str, Any] | None = None
    seq = None
    deltas = 0
    for _ in range(8):
        model.feed_state(source.state())
        message = json.loads(sent[-1])
        if message["t"] == "delta":
            assert message["base"] == seq
            page = apply_delta(page, message["data"])  # type: ignore[arg-type]
            deltas += 1
        else:
            page = message["data"]
        seq = message["seq"]
        assert _resolved(page) == _resolved(pack(model.store.latest.data))  # type: ignore[arg-type, union-attr]
    assert deltas == 7


def _resolved(packed: dict[str, Any]) -> dict[str, Any]:
    """PAGE_SNAPSHOT with every index into "lists" replaced by the list it names."""
    lists = packed["lists"]
    conns = []
    for conn in packed["conns"]:
        conn = {**conn, "sp": lists[conn["sp"]]}
        if conn.get("peerInfo") is not None:
            conn["peerInfo"] = {**conn["peerInfo"], "protocols": lists[conn["peerInfo"]["protocols"]]}
        conns.append(conn)
    return {**{k: v for k, v in packed.items() if k != "lists"}, "conns": conns}


def test_a_hello_names_the_snapshot_the_next_delta_is_of():
    source = SyntheticSource(SyntheticOptions(connections=20, streams=2, seed=3))
    model = DashboardModel(Store(), BrowserHub())
    assert json.loads(model.hello())[0]["seq"] is None  # nothing sent yet: a whole one next
    model.feed_state(source.state())
    model.feed_state(source.state())
    hello = json.loads(model.hello())[0]
    sent: list[str] = []
    model.hub.broadcast = sent.append  # type: ignore[method-assign]
    model.feed_state(source.state())
    message = json.loads(sent[-1])
    assert message["t"] == "delta" and message["base"] == hello["seq"]
    # Another source: the next is whole, and a hello until then names none.
    model.feed_switched("ws://127.0.0.1:1/introspect")
    assert json.loads(model.hello())[0]["seq"] is None
    model.feed_state(source.state())
    assert json.loads(sent[-1])["t"] == "snapshot"


def _snap(ts: int, conns: list[dict[str, Any]], **parts: Any) -> dict[str, Any]:
    base = {"ts": ts, "start": ts - 1000, "dur": 1000, "traffic": {"bwIn": 0}, "pubsub": None}
    return {**base, **parts, "conns": conns}


def _conn(cid: str, **fields: Any) -> dict[str, Any]:
    conn = {"id": cid, "peer": f"peer-{cid}", "status": "ACTIVE", "open": 1, "close": 0, "lat": 5,
            "in": 0, "out": 0, "inPkts": 0, "outPkts": 0, "bwIn": 0, "bwOut": 0, "peerInfo": None,
            "streams": [{"proto": "/p", "role": "INITIATOR", "status": "ACTIVE", "open": 1,
                         "close": 0, "in": 1, "out": 2, "bwIn": 3, "bwOut": 4}]}  # fmt: skip
    conn.update(fields)
    return conn


def test_a_delta_says_what_went_came_moved_and_changed_and_nothing_else():
    feed = PageFeed()
    a, b, c = _conn("a"), _conn("b"), _conn("c")
    first = _snap(1000, [a, b, c])
    assert feed.next(first)[0] == "snapshot" and feed.seq == 1
    # b went, c moved before a, a's bytes changed, d came, d's twin (the same id) too,
    # c's peer was identified, the pubsub part appeared; the rest as it was.
    d = _conn("d", streams=[])
    info = {"agent": "x", "protocols": ["/q", "/p"], "listen": []}
    second = _snap(2000, [_conn("c", peerInfo=info), _conn("a", **{"in": 7}), d, _conn("d")],
                   pubsub={"topics": []})  # fmt: skip
    kind, delta = feed.next(second)
    assert kind == "delta" and feed.seq == 2
    assert delta["conns"][0] == [2, {"peerInfo": {**info, "protocols": 0}}]
    assert delta["lists"][0] == ["/q", "/p"]
    assert delta["conns"][1] == [0, {"in": 7}]
    assert delta["conns"][2]["id"] == "d" and delta["conns"][3]["id"] == "d"  # whole
    assert "traffic" not in delta and delta["pubsub"] == {"topics": []}
    assert _resolved(apply_delta(pack(first), delta)) == _resolved(pack(second))
    # Unchanged: its index alone.
    assert feed.next(second)[1]["conns"][:2] == [0, 1]
    # A connection whose fields are not the same set is sent whole; reset: all whole.
    kind, delta = feed.next(_snap(3000, [_conn("c", relayedOver="r")]))
    assert kind == "delta" and delta["conns"][0]["relayedOver"] == "r"
    feed.reset()
    assert feed.next(_snap(4000, [_conn("c")]))[0] == "snapshot"
    # Another set of parts (one went): whole.
    assert feed.next({k: v for k, v in _snap(5000, [_conn("c")]).items() if k != "pubsub"})[
        0] == "snapshot"


def test_a_hello_carries_the_latest_snapshot_without_its_streams():
    source = SyntheticSource(SyntheticOptions(connections=300, streams=10, seed=3, churn=0.05))
    model = DashboardModel(Store(), BrowserHub())
    for _ in range(3):
        model.feed_state(source.state())
        latest = json.loads(model.hello())[0]["latest"]
        assert all("streams" not in c for c in latest["conns"])
        assert _resolved(latest) == _resolved(pack(model.store.latest.data))  # type: ignore[union-attr]
    # A store the page feed has not sent from (a recording shown): from the stored one.
    model.show_recording(model.store, None)  # type: ignore[arg-type]
    assert not model.pages.has_base
    latest = json.loads(model.hello())[0]["latest"]
    assert _resolved(latest) == _resolved(pack(model.store.latest.data))  # type: ignore[union-attr]
