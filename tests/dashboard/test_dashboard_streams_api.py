"""GET /api/streams (dashboard/streams_api.py): the Streams tables' pages, sorted, found
and paged by the dashboard from the stored snapshot of the moment a page shows.

The model is fed a synthetic node of 5,000 connections of 10 streams (the size of
issue 14's target 7), and every answer is checked against the snapshot stored:
sorting by any column over every page gives the order a user expects (numbers by
value, text case-insensitively, ties in the snapshot's order either way), finding
keeps exactly the streams whose protocol contains the text. The HTTP route is
checked on a real dashboard (loopback): bad parameters are a 400 with the reason,
and the dashboard answers the next request as before.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
import trio
from test_dashboard_app import http, wait_for

from libp2p_introspection.dashboard import Dashboard, DashboardConfig
from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.caps import MAX_TEXT
from libp2p_introspection.dashboard.guards import BadQuery
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store, StoredSnapshot
from libp2p_introspection.dashboard.streams_api import (
    MAX_PAGE_SIZE,
    SORT_FIELDS,
    StreamPages,
    StreamQuery,
)
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

TEXT = {"peer", "proto", "role", "status"}


@pytest.fixture(scope="module")
def big() -> DashboardModel:
    """A model that has converted and stored two snapshots of 5,000x10 (churning)."""
    source = SyntheticSource(
        SyntheticOptions(connections=5_000, streams=10, seed=11, churn=0.05)
    )
    model = DashboardModel(Store(), BrowserHub())
    for _ in range(2):
        model.feed_state(source.state())
    return model


def _expected(snapshot: dict[str, Any], conn: str | None = None) -> list[dict[str, Any]]:
    """Every stream of the stored snapshot as a ROW, in the snapshot's order."""
    ts = snapshot["ts"]
    out = []
    for c in snapshot["conns"]:
        if conn is not None and c["id"] != conn:
            continue
        for k, s in enumerate(c["streams"]):
            end = s["close"] if s["status"] == "CLOSED" and s["close"] else ts
            out.append({"key": f"{c['id']}:{k}", "conn": c["id"], "peer": c["peer"],
                        "proto": s["proto"], "role": s["role"], "status": s["status"],
                        "age": end - s["open"] if s["open"] else 0, "in": s["in"],
                        "out": s["out"], "bwIn": s["bwIn"], "bwOut": s["bwOut"]})  # fmt: skip
    return out


def _user_order(rows: list[dict[str, Any]], field: str, desc: bool) -> list[dict[str, Any]]:
    """What a user expects: by value (text ignoring case), ties in the snapshot's order
    (Python's sort is stable, reversed too)."""
    if field in TEXT:
        ranked = sorted(rows, key=lambda r: r[field].casefold(), reverse=desc)
    else:
        ranked = sorted(rows, key=lambda r: r[field], reverse=desc)
    return ranked


def _all_pages(model: DashboardModel, **query: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page, first = 1, None
    while True:
        answer = model.streams.answer(model.store, StreamQuery(page=page, size=MAX_PAGE_SIZE,
                                                               **query))  # fmt: skip
        assert answer is not None
        first = first or answer
        rows.extend(answer["data"])
        if page >= answer["last_page"]:
            return rows, first
        page += 1
        assert page <= 200  # bounded


@pytest.mark.parametrize("field", SORT_FIELDS)
def test_every_page_sorted_by_any_column_is_the_order_a_user_expects(big, field):
    stored = big.store.latest.data
    expected = _expected(stored)
    assert len(expected) >= 45_000  # 5,000x10, the churn's closed ones included
    for desc in (False, True):
        rows, first = _all_pages(big, ts=stored["ts"], sort=field, desc=desc)
        assert first["total"] == first["last_row"] == len(expected)
        assert first["last_page"] == -(-len(expected) // MAX_PAGE_SIZE)
        assert rows == _user_order(expected, field, desc), (field, desc)


def test_ties_keep_the_snapshots_order_in_either_direction(big):
    stored = big.store.latest.data
    order = {r["key"]: i for i, r in enumerate(_expected(stored))}
    for desc in (False, True):
        rows, _ = _all_pages(big, ts=stored["ts"], sort="role", desc=desc)
        roles = [r["role"] for r in rows]
        assert len(set(roles)) == 2  # one tie group per role, each of thousands of rows
        for role in set(roles):
            group = [order[r["key"]] for r in rows if r["role"] == role]
            assert group == sorted(group)


def test_finding_and_a_status_keep_exactly_the_matching_streams_on_every_page(big):
    stored = big.store.latest.data
    expected = _expected(stored)
    some = expected[123]["proto"]
    needle = some[len(some) // 3 : len(some) // 3 + 4].upper()  # any case finds it
    found = [r for r in expected if needle.casefold() in r["proto"].casefold()]
    assert 0 < len(found) < len(expected)
    rows, first = _all_pages(big, ts=stored["ts"], sort="in", desc=True, find=needle)
    assert rows == _user_order(found, "in", True)
    assert first["last_row"] == len(found) and first["total"] == len(expected)
    closed = [r for r in expected if r["status"] == "CLOSED"]
    assert closed  # the churn closed some
    rows, first = _all_pages(big, ts=stored["ts"], sort="peer", desc=False, status="CLOSED")
    assert rows == _user_order(closed, "peer", False)
    rows, first = _all_pages(big, ts=stored["ts"], find="no such protocol anywhere")
    assert rows == [] and first["last_page"] == 1 and first["last_row"] == 0


def test_a_connections_streams_are_its_own_in_order(big):
    stored = big.store.latest.data
    conn = stored["conns"][4_321]["id"]
    rows, first = _all_pages(big, ts=stored["ts"], conn=conn, sort="age")
    assert rows == _user_order(_expected(stored, conn), "age", False) and len(rows) == first["total"]
    rows, first = _all_pages(big, ts=stored["ts"], conn="not a connection")
    assert rows == [] and first["total"] == 0


def test_a_page_past_the_last_is_the_last_and_each_moment_answers_its_own_streams(big):
    timeline = big.store.timeline()
    assert len(timeline) == 2
    for ts in timeline:
        stored = big.store.at(ts).data  # type: ignore[union-attr]
        answer = big.streams.answer(big.store, StreamQuery(ts=ts, page=10**6, size=7))
        assert answer is not None and answer["ts"] == ts
        expected = _user_order(_expected(stored), "age", False)
        last = answer["last_page"]
        assert answer["page"] == last and answer["data"] == expected[(last - 1) * 7 :]
    # Without ts: the latest; between two moments: the one at or before it.
    latest = big.streams.answer(big.store, StreamQuery(ts=None))
    assert latest is not None and latest["ts"] == timeline[-1]
    between = big.streams.answer(big.store, StreamQuery(ts=timeline[-1] - 1))
    assert between is not None and between["ts"] == timeline[0]


def test_a_moment_not_primed_is_read_from_the_store_and_an_empty_store_has_no_page():
    source = SyntheticSource(SyntheticOptions(connections=30, streams=3, seed=2))
    model = DashboardModel(Store(), BrowserHub())
    for _ in range(3):
        model.feed_state(source.state())
    fresh = StreamPages()  # knows no snapshot: parses the stored text
    for ts in model.store.timeline():
        answer = fresh.answer(model.store, StreamQuery(ts=ts, size=MAX_PAGE_SIZE))
        assert answer is not None
        assert answer["data"] == _user_order(_expected(model.store.at(ts).data), "age", False)  # type: ignore[union-attr]
    assert StreamPages().answer(Store(), StreamQuery(ts=None)) is None


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "1e3"}, "page"),
        ({"page": "9" * 400}, "page"),
        ({"size": str(MAX_PAGE_SIZE + 1)}, "size"),
        ({"size": "0"}, "size"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": str(2**64)}, "ts"),
        ({"sort": "__proto__"}, "sort"),
        ({"sort": "constructor"}, "sort"),
        ({"dir": "up"}, "dir"),
        ({"find": "x" * (MAX_TEXT + 1)}, "find"),
        ({"conn": "c" * (MAX_TEXT + 1)}, "conn"),
        ({"status": "s" * (MAX_TEXT + 1)}, "status"),
        ({"page": "\u0661"}, "page"),  # ARABIC-INDIC ONE: a digit to str.isdigit
    ],
)
def test_a_bad_parameter_is_refused_with_the_reason(params, says):
    with pytest.raises(BadQuery, match=says):
        StreamQuery.parse(params)


async def test_the_route_pages_a_live_node_and_refuses_bad_queries_with_400(nursery):
    source = SyntheticSource(SyntheticOptions(connections=40, streams=5, seed=4, churn=0.1))
    server = await nursery.start(
        IntrospectionServer(source, ServerConfig(port=0, interval_ms=100)).run  # type: ignore[call-arg]
    )
    dashboard = await nursery.start(Dashboard(DashboardConfig(url=server.url, port=0)).run)
    base = dashboard.url + "api/streams"

    async def two() -> bool:
        return len(dashboard.model.store) >= 2

    await wait_for(two, what="two snapshots")
    hostile = "<img src=x onerror=alert(1)>"
    for params in ({"page": "0"}, {"size": "100000"}, {"sort": "x"}, {"ts": "%"},
                   {"find": hostile * 50}, {"dir": hostile}):  # fmt: skip
        status, body = await http(base + "?" + urllib.parse.urlencode(params))
        assert status == 400, (params, status, body)
        assert body["ok"] is False and body["error"]
        assert hostile not in body["error"]  # the reason names the parameter, not echoes it
    status, body = await http(base + "?sort=out&dir=desc&size=10&find=" +
                              urllib.parse.quote(hostile))  # fmt: skip
    assert status == 200 and body["data"] == [] and body["last_row"] == 0
    status, body = await http(base + "?sort=out&dir=desc&size=10")
    assert status == 200 and len(body["data"]) == 10
    stored = dashboard.model.store.at(body["ts"]).data
    assert body["data"] == _user_order(_expected(stored), "out", True)[:10]
    # A newer snapshot: the latest answers it; the moment asked before still answers its own.
    first_ts = body["ts"]

    async def newer() -> bool:
        _, latest = await http(base)
        return latest["ts"] > first_ts

    await wait_for(newer, what="a newer snapshot")
    status, again = await http(base + f"?ts={first_ts}&sort=out&dir=desc&size=10")
    assert status == 200 and again == body
    await trio.sleep(0)


def test_hostile_protocols_come_back_as_the_same_text_and_find_is_literal():
    model = DashboardModel(Store(), BrowserHub())
    source = SyntheticSource(SyntheticOptions(connections=3, streams=2, seed=1))
    state = source.state()
    hostile = ["<img src=x onerror=alert(1)>", "%s%n{0}", ".*", "\u202eevil", "a\x00b"]
    streams = [s for c in state.subsystems.connections for s in c.streams.streams]
    for s, proto in zip(streams, hostile, strict=False):
        s.protocol = proto
    model.feed_state(state)
    for proto in hostile:
        answer = model.streams.answer(model.store, StreamQuery(ts=None, find=proto))
        assert answer is not None
        assert [r["proto"] for r in answer["data"]] == [proto], proto
    assert json.loads(json.dumps(answer)) == answer


def test_the_first_page_asked_of_the_latest_snapshot_parses_nothing(monkeypatch):
    """Opening the Streams tab at 5,000x10 must not wait for the newest snapshot's stored
    text to be parsed again (hundreds of ms on the dashboard's loop): the model has just
    converted it, and its rows are built from that."""
    source = SyntheticSource(SyntheticOptions(connections=30, streams=3, seed=5))
    model = DashboardModel(Store(), BrowserHub())
    for _ in range(2):
        model.feed_state(source.state())  # no page asked for streams yet: nothing primed
    parsed: list[int] = []
    real = StoredSnapshot.data

    def counting(self: StoredSnapshot) -> Any:
        parsed.append(self.ts)
        return real.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(StoredSnapshot, "data", property(counting))
    answer = model.streams.answer(model.store, StreamQuery(ts=None, size=MAX_PAGE_SIZE))
    assert parsed == []
    assert answer is not None
    monkeypatch.undo()
    assert answer["data"] == _user_order(_expected(model.store.latest.data), "age", False)  # type: ignore[union-attr]
