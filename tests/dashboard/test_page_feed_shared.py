"""The page feed reuses the page's form of a connection whose dict is the very object
of the snapshot before (the converter shares an unchanged connection's dict): over
sequences that share, copy, change, duplicate and drop connections' dicts, and reset,
every delta applied to its base is exactly the snapshot packed from scratch, and a
hello's whole text is too."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dashboard_page_json import _conn, _resolved, _snap, apply_delta

from libp2p_introspection.dashboard.page_json import PageFeed, pack

STEP = st.lists(
    st.tuples(
        st.sampled_from(["same", "copy", "changed", "twice", "new", "drop"]),
        st.integers(0, 7),
    ),
    max_size=8,
)


def _next_conns(previous: list[dict[str, Any]], steps: list[tuple[str, int]], ts: int) -> list:
    conns = list(previous)
    for how, n in steps:
        if how == "new" or not conns:
            conns.append(_conn(f"c{ts}-{n}", bwIn=n, streams=[]))
            continue
        i = n % len(conns)
        if how == "copy":  # equal content, another object
            conns[i] = {**conns[i]}
        elif how == "changed":  # another object, one field moved
            conns[i] = {**conns[i], "bwIn": conns[i]["bwIn"] + 1, "status": "CLOSED"}
        elif how == "twice":  # the very same object twice in one snapshot
            conns.append(conns[i])
        elif how == "drop":
            del conns[i]
        # "same": the very object again, unchanged
    return conns


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(STEP, st.booleans()), min_size=1, max_size=8))
def test_deltas_of_shared_and_changed_connection_dicts_are_exact(steps):
    feed = PageFeed()
    conns = [_conn("a"), _conn("b", peerInfo={"agent": "x", "protocols": ["/p", "/q"]})]
    page: dict[str, Any] | None = None
    for ts, (step, reset) in enumerate(steps, start=1):
        conns = _next_conns(conns, step, ts)
        snapshot = _snap(ts, conns)
        if reset:
            feed.reset()
        kind, text = feed.next_text(snapshot)
        data = json.loads(text)
        if kind == "delta":
            assert page is not None
            page = apply_delta(page, data)
        else:
            page = data
        expected = _resolved(json.loads(json.dumps(pack(snapshot))))
        assert _resolved(page) == expected
        assert _resolved(json.loads(feed.whole_text())) == expected


def test_a_dict_dropped_and_freed_cannot_lend_its_page_form_to_a_new_one():
    # The page feed holds the last snapshot's dicts, so an id it remembers is never a
    # new object's: a connection changed into a fresh dict is seen as changed.
    feed = PageFeed()
    feed.next_text(_snap(1, [_conn("a", bwIn=1)]))
    for ts in range(2, 40):  # fresh dicts each time, the old ones freed as they go
        kind, text = feed.next_text(_snap(ts, [_conn("a", bwIn=ts)]))
        assert kind == "delta"
        assert json.loads(text)["conns"] == [[0, {"bwIn": ts}]]
