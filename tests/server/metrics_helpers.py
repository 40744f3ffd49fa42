"""Shared by the metrics tests: a hub fed by a source on a fake clock, the exposition
parsed back, and snapshots built field by field (PROTOCOL.md §3.1)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_server_message
from libp2p_introspection.protocol.session import SessionLimits
from libp2p_introspection.server.hub import Hub
from libp2p_introspection.server.metrics import MetricsView, ViewCollector
from libp2p_introspection.server.metrics.families import registry

T0 = 1_700_000_000_000


class FakeClockMs:
    """Wall clock for sources, ms since epoch, moved by hand."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def exposition(view: MetricsView, runtime: pb.Runtime | None = None) -> str:
    """The text ``/metrics`` serves for ``view``."""
    collector = ViewCollector(view, runtime or pb.Runtime(implementation="test"))
    return generate_latest(registry(collector)).decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the exposition ``text`` by sample name (prometheus_client's parser)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for got, v in samples(text).get(name, []) if labels.items() <= got.items())


def hub_with_view(**view_options: bool) -> tuple[Hub, MetricsView]:
    hub = Hub(SessionLimits(), pb.Runtime(implementation="test"), clock=lambda: 0.0)
    view = MetricsView(**view_options)
    hub.observers.append(view)
    return hub, view


def publish(hub: Hub, state: pb.State) -> None:
    message = pb.ServerMessage()
    message.version.version = 1
    message.state.CopyFrom(state)
    hub.publish_snapshot(encode_server_message(message))


def connection(
    number: int,
    *,
    status: int = pb.ACTIVE,
    role: int = pb.INITIATOR,
    local: str = "/ip4/127.0.0.1/tcp/40000",
    transport: bytes = b"tcp",
    open_ts: int = T0,
    upgraded_ts: int = T0 + 25,
    close_ts: int = 0,
    peer_id: str = "12D3KooWGRUVh1ZWWrcVz6bx3YNkpyjF5ZoL48WRZvoC3jFTnXaa",
    protocols: Iterable[str] | None = None,
    listen_addrs: Iterable[str] = (),
) -> pb.Connection:
    conn = pb.Connection(id=number.to_bytes(8, "big"), peer_id=peer_id, status=status,
                         role=role, transport_id=transport)  # fmt: skip
    conn.endpoints.src_multiaddr = local
    conn.endpoints.dst_multiaddr = "/ip4/10.0.0.1/tcp/4001"
    conn.timeline.open_ts = open_ts
    conn.timeline.upgraded_ts = upgraded_ts
    conn.timeline.close_ts = close_ts
    conn.attribs.multiplexer = "/yamux/1.0.0"
    conn.attribs.encryption = "/noise"
    if protocols is not None:
        conn.peer.protocols.extend(protocols)
        conn.peer.listen_addrs.extend(listen_addrs)
        conn.peer.agent_version = "go-libp2p/0.36"
    return conn


def state(*connections: pb.Connection, instant_ts: int = T0 + 1_000) -> pb.State:
    snapshot = pb.State(instant_ts=instant_ts, start_ts=instant_ts - 1_000)
    snapshot.subsystems.connections.extend(connections)
    return snapshot


def prometheus_binary() -> str:
    """Debian's ``prometheus`` (on PATH or /usr/bin): the tests that run a real one skip
    without it, except under CI (env ``CI``), where it must be installed."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
    )
    if found is None:
        reason = "prometheus is not installed (Debian package prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required under CI)")
        pytest.skip(reason)
    return found
