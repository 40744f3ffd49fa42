"""The application's own data on a real py-libp2p host (PROTOCOL.md §3.1): event types
it declares, the events it publishes, and tags on its connections and streams."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import trio
from event_checks import FakeClock, check_events
from introspector_harness import EventLog, connect, connections_to, running_hosts, wait_until
from multiaddr import Multiaddr

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.application import ApplicationDataError

P = pb.EventType.EventProperty
ECHO = "/test/app-echo/1.0.0"

TRADE = {
    "peerId": "PEERID",
    "amount": "NUMBER",
    "at": P.TIME,
    "venue": "MULTIADDR",
    "labels": ("STRING", True),
    "extra": "JSON",
}


def _trade(peer: str, **changes: Any) -> dict[str, Any]:
    content = {
        "peerId": peer,
        "amount": 12.5,
        "at": 1_700_000_000_000,
        "venue": "/ip4/127.0.0.1/tcp/4001",
        "labels": ["a", "b"],
        "extra": {"nested": [1, None, True]},
    }
    content.update(changes)
    return content


async def test_declared_types_are_in_the_runtime_and_their_events_reach_the_sink() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(1) as (host,):
            introspector = HostIntrospector(host, clock_ms=clock)
            log = EventLog()
            introspector.set_event_sink(log)
            app = introspector.application
            spec = app.declare_event_type("Trade", TRADE)
            assert app.declare_event_type("Trade", TRADE) is spec  # the same again: no change
            runtime = introspector.runtime()
            names = [t.name for t in runtime.event_types]
            assert names[-1] == "Trade" and "ConnectionOpened" in names  # after the built-ins
            declared = runtime.event_types[-1]
            shape = [(p.name, P.PropertyType.Name(p.type), p.has_multiple) for p in declared.property_types]
            assert shape == [
                ("peerId", "PEERID", False),
                ("amount", "NUMBER", False),
                ("at", "TIME", False),
                ("venue", "MULTIADDR", False),
                ("labels", "STRING", True),
                ("extra", "JSON", False),
            ]
            peer = host.get_id().to_base58()
            app.publish_event("Trade", _trade(peer))
            clock.advance(5)
            # py-libp2p objects are written as text; an explicit ts is kept as given.
            app.publish_event(
                "Trade",
                _trade(host.get_id(), venue=Multiaddr("/ip4/10.0.0.1/tcp/1")),
                ts=1_600_000_000_000,
            )
            first, second = log.events
            assert first.ts == 1_700_000_000_000 and second.ts == 1_600_000_000_000
            assert list(first.type.property_types) == list(declared.property_types)
            assert json.loads(first.content) == _trade(peer)
            assert json.loads(second.content)["venue"] == "/ip4/10.0.0.1/tcp/1"
            assert json.loads(second.content)["peerId"] == peer
            check_events(runtime, log.events)
            introspector.detach()


@pytest.mark.parametrize(
    ("name", "properties", "message"),
    [
        ("ConnectionOpened", {"a": "STRING"}, "built-in"),
        ("InboundDHTQuery", {"a": "STRING"}, "built-in"),  # built in even with no DHT here
        ("", {"a": "STRING"}, "must match"),
        ("has space", {"a": "STRING"}, "must match"),
        ("1st", {"a": "STRING"}, "must match"),
        ("T", {}, "1 to 64 properties"),
        ("T", {f"p{i}": "STRING" for i in range(65)}, "1 to 64 properties"),
        ("T", {"a": "TEXT"}, "not one of the schema's"),
        ("T", {"a": 7}, "not one of the schema's"),
        ("T", {"a": True}, "not one of the schema's"),
        ("T", {"a": ("STRING", 1)}, "has_multiple must be a bool"),
        ("T", {"bad-key": "STRING"}, "property name"),
        ("T", [("a", "STRING"), ("a", "NUMBER")], "declared twice"),
        ("T", [("a",)], "(name, type)"),
        ("T", "a", "sequence or a mapping"),
    ],
)
async def test_a_bad_declaration_is_a_clear_error_and_declares_nothing(
    name: str, properties: Any, message: str
) -> None:
    async with running_hosts(1) as (host,):
        introspector = HostIntrospector(host)
        before = introspector.runtime()
        with pytest.raises(ApplicationDataError, match=message):
            introspector.application.declare_event_type(name, properties)
        assert introspector.runtime() == before
        introspector.detach()


async def test_redeclaring_a_type_with_other_properties_is_an_error() -> None:
    async with running_hosts(1) as (host,):
        introspector = HostIntrospector(host)
        app = introspector.application
        app.declare_event_type("Vote", [("peerId", "PEERID"), ("yes", "JSON")])
        for other in (
            [("peerId", "STRING"), ("yes", "JSON")],  # another type
            [("peerId", "PEERID"), ("yes", "JSON", True)],  # has_multiple
            [("yes", "JSON"), ("peerId", "PEERID")],  # another order
            [("peerId", "PEERID")],  # fewer
        ):
            with pytest.raises(ApplicationDataError, match="already declared with other"):
                app.declare_event_type("Vote", other)
        assert [s.name for s in app.specs] == ["Vote"]
        assert app.specs[0].properties == (("peerId", P.PEERID), ("yes", P.JSON))
        introspector.detach()


async def test_an_event_that_does_not_match_its_declaration_is_refused_and_not_sent() -> None:
    async with running_hosts(1) as (host,):
        introspector = HostIntrospector(host)
        log = EventLog()
        introspector.set_event_sink(log)
        app = introspector.application
        app.declare_event_type("Trade", TRADE)
        peer = host.get_id().to_base58()
        bad: list[tuple[str, Any, str]] = [
            ("Nope", _trade(peer), "not declared"),
            ("ConnectionOpened", _trade(peer), "not declared"),  # built-ins are not the app's
            ("Trade", [("peerId", peer)], "must be a dict"),
            ("Trade", {k: v for k, v in _trade(peer).items() if k != "amount"}, "missing"),
            ("Trade", {**_trade(peer), "more": 1}, "undeclared"),
            ("Trade", _trade(peer, amount="12"), "Trade.amount must be an int or a finite float"),
            ("Trade", _trade(peer, amount=True), "Trade.amount"),
            ("Trade", _trade(peer, amount=math.nan), "Trade.amount"),
            ("Trade", _trade(peer, at=1.5), "Trade.at must be an int, ms since epoch"),
            ("Trade", _trade(peer, at=-1), "Trade.at"),
            ("Trade", _trade("not/base58!"), "Trade.peerId must be a base58 peer id"),
            ("Trade", _trade(peer, venue="127.0.0.1:4001"), "Trade.venue must be a multiaddr"),
            ("Trade", _trade(peer, venue="/ip4/999.1.1.1/tcp/1"), "is not a multiaddr"),
            ("Trade", _trade(peer, labels="a"), "Trade.labels .has_multiple. must be a list"),
            ("Trade", _trade(peer, labels=["a", 2]), r"Trade.labels\[1\] must be a str"),
            ("Trade", _trade(peer, extra={"x": math.inf}), "Trade.extra must be a JSON value"),
            ("Trade", _trade(peer, extra={1: object()}), "Trade.extra"),
            ("Trade", _trade(peer, extra="x" * 70_000), "over 65536"),
        ]
        for name, content, message in bad:
            with pytest.raises(ApplicationDataError, match=message):
                app.publish_event(name, content)
        for ts in (-1, 2**64, 1.0, True, "now"):
            with pytest.raises(ApplicationDataError, match="ts must be an int"):
                app.publish_event("Trade", _trade(peer), ts=ts)
        assert log.events == []
        app.publish_event("Trade", _trade(peer))  # and the API still works
        assert len(log.events) == 1
        introspector.detach()


async def test_tags_on_connections_and_streams_appear_in_snapshots_and_go_with_them() -> None:
    clock = FakeClock()
    with trio.fail_after(30):
        async with running_hosts(3) as (h1, h2, h3):
            introspector = HostIntrospector(h1, clock_ms=clock, closed_connection_lifetime_ms=1_000)
            app = introspector.application
            release = trio.Event()

            async def hold(stream: Any) -> None:
                await release.wait()
                await stream.close()

            h2.set_stream_handler(ECHO, hold)
            await connect(h1, h2)
            await connect(h1, h3)
            p2, p3 = h2.get_id().to_base58(), h3.get_id().to_base58()
            (conn2,) = h1.get_network().get_connections(h2.get_id())
            # By object, by ID and by base58: each finds the open connection.
            assert app.tag_connection(conn2, "bootstrap") == 1
            assert app.tag_connection(h2.get_id(), "validator", "bootstrap") == 1
            assert app.tag_connection(p3, "relay") == 1
            stream = await h1.new_stream(h2.get_id(), [ECHO])
            app.tag_stream(stream, "rpc", "rpc", "slow")
            state = introspector.state()
            (c2,), (c3,) = connections_to(state, p2), connections_to(state, p3)
            assert list(c2.user_provided_tags) == ["bootstrap", "validator"]
            assert list(c3.user_provided_tags) == ["relay"]
            (s,) = [s for s in c2.streams.streams if s.protocol == ECHO]
            assert list(s.user_provided_tags) == ["rpc", "slow"]
            assert all(not x.user_provided_tags for x in c3.streams.streams)

            assert app.untag_connection(p2, "bootstrap", "never-there") == 1
            app.untag_stream(stream, "slow")
            state = introspector.state()
            (c2,) = connections_to(state, p2)
            assert list(c2.user_provided_tags) == ["validator"]
            (s,) = [s for s in c2.streams.streams if s.protocol == ECHO]
            assert list(s.user_provided_tags) == ["rpc"]

            # A closed connection keeps its tags while it is shown, then they go with it.
            release.set()
            await h1.disconnect(h2.get_id())
            await wait_until(lambda: not h1.get_network().get_connections(h2.get_id()))
            state = introspector.state()
            (c2,) = connections_to(state, p2)
            assert c2.status in (pb.CLOSED, pb.ERROR)
            assert list(c2.user_provided_tags) == ["validator"]
            with pytest.raises(ApplicationDataError, match="no open connection"):
                app.tag_connection(conn2, "late")
            with pytest.raises(ApplicationDataError, match="no open connection"):
                app.tag_connection(p2, "late")
            with pytest.raises(ApplicationDataError, match="not an open stream"):
                app.tag_stream(stream, "late")
            clock.advance(1_000)
            assert connections_to(introspector.state(), p2) == []
            # A new connection to the same peer starts with no tags.
            await connect(h1, h2)
            await wait_until(lambda: bool(h1.get_network().get_connections(h2.get_id())))
            (fresh,) = [
                c for c in connections_to(introspector.state(), p2) if c.status == pb.ACTIVE
            ]
            assert list(fresh.user_provided_tags) == []
            introspector.detach()


async def test_bad_tags_and_foreign_targets_are_clear_errors() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            introspector = HostIntrospector(h1)
            other = HostIntrospector(h2)
            app = introspector.application
            h1.set_stream_handler(ECHO, lambda stream: stream.close())
            await connect(h1, h2)
            (conn,) = h1.get_network().get_connections(h2.get_id())
            for tags in ((), ("",), ("a\nb",), ("x" * 257,), (3,)):
                with pytest.raises(ApplicationDataError, match="tag"):
                    app.tag_connection(conn, *tags)
            with pytest.raises(ApplicationDataError, match="not a peer id"):
                app.tag_connection("0OIl", "x")
            with pytest.raises(ApplicationDataError, match="no open connection"):
                app.tag_connection(h1.get_id(), "x")  # ourselves: no connection
            # The peer's side of the connection is not one of this host's.
            (theirs,) = h2.get_network().get_connections(h1.get_id())
            with pytest.raises(ApplicationDataError, match="no open connection"):
                app.tag_connection(theirs, "x")
            foreign = await h2.new_stream(h1.get_id(), [ECHO])
            with pytest.raises(ApplicationDataError, match="not an open stream"):
                app.tag_stream(foreign, "x")
            with pytest.raises(ApplicationDataError, match="not an open stream"):
                app.tag_stream(object(), "x")  # type: ignore[arg-type]
            app.tag_connection(conn, *[f"t{i}" for i in range(64)])
            with pytest.raises(ApplicationDataError, match="at most 64"):
                app.tag_connection(conn, "one-more")
            (mine,) = connections_to(introspector.state(), h2.get_id().to_base58())
            assert len(mine.user_provided_tags) == 64
            other.detach()
            introspector.detach()
