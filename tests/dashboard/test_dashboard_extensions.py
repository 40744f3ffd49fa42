"""The §3.1 extensions in the dashboard's JSON (convert.py / convert_ext.py), and the
sentence each new event type reads as (protocol/event_text.py). Pure, no sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from full_node import PEER_A, PEER_B, events, state, write_full_recording

from libp2p_introspection.dashboard.caps import MAX_LIST, MAX_TEXT, dumps
from libp2p_introspection.dashboard.convert import SnapshotConverter, summarize
from libp2p_introspection.dashboard.convert_events import event_to_json
from libp2p_introspection.dashboard.recording import load_recording
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.event_text import EVENT_TYPES, describe


def _strict(text: str) -> Any:
    """Parse as a browser's JSON.parse does (no NaN, no Infinity)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the page's JSON"))


def test_every_extension_reaches_the_page_json():
    converter = SnapshotConverter()
    converter.convert(state(0))
    data = _strict(dumps(converter.convert(state(1))))
    assert data["node"] == {
        "listen": ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.1.1/tcp/4001"],
        "observed": ["/ip4/203.0.113.7/tcp/4001"],
        "reachability": "PRIVATE",
        "protocols": ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/meshsub/1.1.0"],
    }
    meshsub = data["protocols"][0]
    assert meshsub == {"proto": "/meshsub/1.1.0", "active": 2, "opened": 5, "in": 6000,
                       "out": 3000, "inPkts": 60, "outPkts": 30, "bwIn": 3000, "bwOut": 1500}  # fmt: skip
    assert [p["proto"] for p in data["protocols"]] == ["/meshsub/1.1.0", "/ipfs/ping/1.0.0", ""]
    by_peer = {c["peer"]: c["peerInfo"] for c in data["conns"]}
    assert by_peer[PEER_A] == {"agent": "py-libp2p/0.8.1", "protoVersion": "ipfs/0.1.0",
                               "protocols": ["/ipfs/id/1.0.0", "/meshsub/1.1.0"],
                               "listen": ["/ip4/10.0.0.1/tcp/4001"],
                               "observed": "/ip4/127.0.0.1/tcp/4001"}  # fmt: skip
    assert by_peer[PEER_B] is None  # not identified yet
    pubsub = data["pubsub"]
    assert pubsub["router"] == "/meshsub/1.1.0"
    blocks, _, others = pubsub["topics"]
    assert blocks == {"name": "blocks", "subscribed": True, "mesh": 1, "fanout": 0, "known": 2,
                      "meshPeers": [PEER_A], "msgIn": 10, "msgOut": 4, "bytesIn": 200,
                      "bytesOut": 100, "bwIn": 100, "bwOut": 50,
                      "rateIn": 5.0, "rateOut": 2.0}  # fmt: skip
    assert (others["subscribed"], others["mesh"], others["fanout"]) == (False, 0, 1)
    assert pubsub["peers"][0] == {"peer": PEER_A, "protocol": "/meshsub/1.1.0", "score": -1.25,
                                  "topics": ["blocks", "txs"]}  # fmt: skip
    resources = data["resources"]
    assert resources["blocked"] == 4
    system, meshsub_scope = resources["scopes"]
    assert system["name"] == "system"
    assert system["usage"]["memory"] == 5 << 20 and system["limit"]["streamsTotal"] == 1024
    assert meshsub_scope["usage"]["streamsTotal"] == 2 and meshsub_scope["limit"]["streamsTotal"] == 0
    assert summarize(data)["protos"] == {"/meshsub/1.1.0": [3000, 1500],
                                         "/ipfs/ping/1.0.0": [200, 100], "": [0, 0]}  # fmt: skip


def test_an_absent_extension_is_null_and_an_empty_one_is_not():
    old = SnapshotConverter().convert(state(0, extensions=False))
    assert (old["node"], old["pubsub"], old["resources"], old["protocols"]) == (None, None, None, [])
    assert all(c["peerInfo"] is None for c in old["conns"])
    assert summarize(old)["protos"] == {}
    empty = pb.State(instant_ts=1)
    empty.subsystems.pubsub.router = "/floodsub/1.0.0"  # a router with no topic yet
    empty.subsystems.resources.blocked = 0
    empty.subsystems.resources.SetInParent()
    empty.node.reachability = pb.NodeInfo.NOT_RUNNING
    data = SnapshotConverter().convert(empty)
    assert data["pubsub"] == {"router": "/floodsub/1.0.0", "topics": [], "peers": []}
    assert data["resources"] == {"blocked": 0, "scopes": []}
    assert data["node"]["reachability"] == "NOT_RUNNING"


def test_a_recording_made_before_the_extensions_loads_as_before(fixtures_dir: Path):
    store, _ = load_recording(fixtures_dir / "sample-1min.mock")
    assert store.latest is not None
    latest = store.latest.data
    assert latest["conns"]
    assert (latest["node"], latest["pubsub"], latest["resources"]) == (None, None, None)
    assert latest["protocols"] == [] and all(c["peerInfo"] is None for c in latest["conns"])


def test_a_recording_with_every_extension_loads(tmp_path: Path):
    store, _ = load_recording(write_full_recording(tmp_path / "full.mock"))
    latest = store.latest.data
    assert latest["pubsub"]["topics"][0]["rateIn"] == 5.0
    says = [e["says"] for e in store.events()]
    assert len(says) == len(EVENT_TYPES)


def test_hostile_extension_values_are_capped_and_stay_json():
    s = pb.State(instant_ts=1)
    s.node.listen_addrs.extend(f"/ip4/1.1.1.1/tcp/{i}" for i in range(MAX_LIST + 10))
    s.protocols.add(protocol="p" * (MAX_TEXT + 5))
    topic = s.subsystems.pubsub.topics.add(name="t" * 5000)
    topic.mesh_peers.extend(["x"] * 1000)
    for score in (float("nan"), float("inf"), float("-inf")):
        s.subsystems.pubsub.peers.add(peer_id="p", score=score)
    conn = s.subsystems.connections.add(id=b"\x01")
    conn.peer.agent_version = "a" * 100_000
    data = _strict(dumps(SnapshotConverter().convert(s)))
    listen = data["node"]["listen"]
    assert len(listen) == MAX_LIST + 1 and listen[-1] == "…(+10 more)"
    assert data["protocols"][0]["proto"] == "p" * MAX_TEXT + "…(+5 chars)"
    assert data["pubsub"]["topics"][0]["mesh"] == 1000  # counted whole, listed capped
    assert len(data["pubsub"]["topics"][0]["meshPeers"]) == MAX_LIST + 1
    assert [p["score"] for p in data["pubsub"]["peers"]] == [None, None, None]
    assert data["conns"][0]["peerInfo"]["agent"].endswith(f"…(+{100_000 - MAX_TEXT} chars)")


def test_topic_rates_never_come_from_a_count_that_went_back_or_a_stuck_clock():
    converter = SnapshotConverter()
    converter.convert(state(2))
    back = converter.convert(state(1))  # counts lower, time earlier: another node, a restart
    assert back["pubsub"]["topics"][0]["rateIn"] is None
    converter.convert(state(2))
    stuck = converter.convert(state(2))  # the same instant again
    assert stuck["pubsub"]["topics"][0]["rateIn"] is None
    converter.reset()
    assert converter.convert(state(3))["pubsub"]["topics"][0]["rateIn"] is None


def test_each_new_event_type_reads_as_a_sentence():
    said = {e.type.name: event_to_json(e).get("says") for e in events()}
    assert said == {
        "PeerIdentified": '12D3KooW…AAAAAA is "py-libp2p/0.8.1" (ipfs/0.1.0), 1 protocol',
        "ListenAddrsChanged": "now listening on /ip4/10.1.1.1/tcp/4001",
        "ReachabilityChanged": "reachability is now PRIVATE",
        "PubsubSubscriptionChanged": '12D3KooW…BBBBBB subscribed to "txs"',
        "PubsubGraft": '12D3KooW…AAAAAA joined our mesh of "blocks" (the peer asked)',
        "PubsubPrune": '12D3KooW…AAAAAA left our mesh of "txs" (we asked)',
    }
    assert describe("ListenAddrsChanged", {"added": [], "removed": [f"/a/{i}" for i in range(6)]}) == (
        "no longer on /a/0, /a/1, /a/2, /a/3 and 2 more"
    )
    assert describe("PubsubSubscriptionChanged", {"peerId": PEER_B, "topic": "t",
                                                  "subscribed": False}) == (
        '12D3KooW…BBBBBB unsubscribed from "t"'
    )  # fmt: skip


@pytest.mark.parametrize(
    "type_name, content",
    [
        ("PeerIdentified", {"peerId": "p", "agentVersion": 1, "protocolVersion": "", "protocols": []}),
        ("PeerIdentified", {"peerId": "p", "agentVersion": "a", "protocolVersion": "", "protocols": [1]}),
        ("ListenAddrsChanged", {"added": "not a list", "removed": []}),
        ("ReachabilityChanged", {}),
        ("PubsubSubscriptionChanged", {"peerId": "p", "topic": "t", "subscribed": "yes"}),
        ("PubsubGraft", {"peerId": "p", "topic": None, "direction": "INBOUND"}),
        ("PubsubPrune", ["not", "an", "object"]),
        ("PubsubPrune", "not JSON at all"),
        ("SomeOtherType", {"peerId": "p"}),
    ],
)  # fmt: skip
def test_a_content_not_of_the_shape_reads_as_its_raw_content(type_name: str, content: Any):
    assert describe(type_name, content) is None
    event = pb.Event(type=pb.EventType(name=type_name), ts=1,
                     content=content if isinstance(content, str) else json.dumps(content))  # fmt: skip
    assert "says" not in event_to_json(event)


def test_a_long_value_is_cut_in_the_sentence():
    said = describe("PubsubGraft", {"peerId": "p", "topic": "t" * 1000, "direction": "x" * 500})
    assert said is not None and len(said) < 300 and said.count("…") == 2


def test_the_snapshot_budget_counts_the_extensions_and_a_refusal_keeps_the_rates():
    from libp2p_introspection.dashboard.convert import SnapshotTooLarge

    def after_first(budget: int) -> SnapshotConverter:
        converter = SnapshotConverter(max_snapshot_bytes=budget)
        converter.convert(state(0))
        return converter

    exact = len(dumps(after_first(10**9).convert(state(1))))
    assert after_first(exact).convert(state(1))
    converter = after_first(10**9)
    converter.max_snapshot_bytes = exact - 1
    with pytest.raises(SnapshotTooLarge):
        converter.convert(state(1))  # one character over: the extensions' text counts
    converter.max_snapshot_bytes = 10**9
    # The refused snapshot left no trace: rates still count from state(0), two seconds ago.
    topic = converter.convert(state(2))["pubsub"]["topics"][0]
    assert topic["rateIn"] == 5.0 and topic["msgIn"] == 15
