"""Attacks on GET /api/streams (dashboard/streams_api.py) with what a node may send.

A node may send two connections under one id (the converter keeps both, in order:
tests/dashboard/test_convert_incremental.py's "duplicate id"; two long ids differing
past MAX_ID_BYTES are one id once capped, too). The Streams tables are Tabulator
tables indexed by a row's ``key`` ("CONN_ID:K"), and the connection's detail asks
``conn=ID`` for its streams: what the page gets must still be every stream the stored
snapshot holds, each row under a key of its own.
"""

from __future__ import annotations

from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.dashboard.streams_api import MAX_PAGE_SIZE, StreamQuery
from libp2p_introspection.protocol import pb

TS = 1_700_000_000_000


def _twins() -> DashboardModel:
    """A model holding one snapshot of two connections with the same id, 2 streams each."""
    state = pb.State(instant_ts=TS, start_ts=TS - 1_000, snapshot_duration_ms=1_000)
    for peer in ("QmFirst", "QmTwin"):
        conn = state.subsystems.connections.add(id=b"\x01", peer_id=peer, status=pb.ACTIVE)
        conn.timeline.open_ts = TS - 5_000
        for j in range(2):
            conn.streams.streams.add(id=bytes([j]), protocol=f"/{peer}/{j}", status=pb.ACTIVE)
    model = DashboardModel(Store(), BrowserHub())
    model.feed_state(state)
    return model


def test_twin_connections_streams_each_have_a_key_of_their_own():
    model = _twins()
    stored = model.store.latest
    assert stored is not None
    held = [s["proto"] for c in stored.data["conns"] for s in c["streams"]]
    assert len(held) == 4  # the converter kept both twins
    answer = model.streams.answer(model.store, StreamQuery(ts=None, size=MAX_PAGE_SIZE))
    assert answer is not None
    assert sorted(r["proto"] for r in answer["data"]) == sorted(held)
    keys = [r["key"] for r in answer["data"]]
    # The table's index: two rows under one key are one row to Tabulator.
    assert len(set(keys)) == len(keys), keys


def test_a_connection_id_shared_by_twins_pages_every_stream_stored_under_it():
    model = _twins()
    stored = model.store.latest
    assert stored is not None
    cid = stored.data["conns"][0]["id"]
    held = [s["proto"] for c in stored.data["conns"] if c["id"] == cid for s in c["streams"]]
    answer = model.streams.answer(model.store, StreamQuery(ts=None, size=MAX_PAGE_SIZE, conn=cid))
    assert answer is not None
    assert answer["total"] == len(held) == answer["last_row"]
    assert sorted(r["proto"] for r in answer["data"]) == sorted(held)


def test_a_moment_evicted_is_not_answered_with_a_later_moments_streams():
    """A page scrubbed to the oldest moment keeps showing it (it holds that snapshot);
    once the store dropped it, the Streams table's next page (a sort, a page, the
    connection's detail) asks for it again. The module doc promises the stored snapshot
    at or before the moment: the first stored is after it, another moment's streams
    (the table would show them under the moment the rest of the page shows)."""
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

    source = SyntheticSource(SyntheticOptions(connections=4, streams=3, seed=5, churn=0.5))
    model = DashboardModel(Store(max_snapshots=2), BrowserHub())
    model.feed_state(source.state())
    shown = model.store.timeline()[0]  # the moment a page shows
    for _ in range(3):
        model.feed_state(source.state())
    assert shown not in model.store.timeline()  # evicted
    answer = model.streams.answer(model.store, StreamQuery(ts=shown, size=MAX_PAGE_SIZE))
    assert answer is None or answer["ts"] <= shown, (
        f"asked for {shown}, answered {answer['ts']}, a later moment")
