"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes our ``/metrics`` with the
bearer token, and every go-libp2p dashboard query our data can answer returns data.

Skipped without Prometheus, except under CI (env ``CI``), where it must run.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import trio
from go_dashboards import QUERIES, promql
from metrics_helpers import prometheus_binary

from libp2p_introspection.protocol import pb
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

TOKEN = "prometheus-test-token"
CONNECTIONS = 8
#: Scrapes waited for at most (one a second), then the test fails: a bound, not a timing.
MAX_WAIT_S = 120


class FullNode(SyntheticSource):
    """The synthetic node with what py-libp2p's other subsystems add (PROTOCOL.md §3.1):
    node info, identified peers, per-protocol traffic, a resource manager, and a QUIC
    connection replaced every snapshot (the synthetic node's are all TCP)."""

    def __init__(self) -> None:
        super().__init__(SyntheticOptions(connections=CONNECTIONS, churn=0.25, dht_peers=10,
                                          events_per_second=5))  # fmt: skip
        self.quic = 0
        self.blocked = 0

    def encoded_state(self) -> bytes:
        state = pb.State.FromString(super().encoded_state())
        for conn in state.subsystems.connections:
            conn.peer.protocols.extend(["/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/kad/1.0.0"])
            conn.peer.listen_addrs.extend(["/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/udp/4001"])
        now = state.instant_ts
        self.quic += 1
        for number, status in ((self.quic - 1, pb.CLOSED), (self.quic, pb.ACTIVE)):
            if number == 0:
                continue
            conn = state.subsystems.connections.add(
                id=b"quic" + number.to_bytes(4, "big"), status=status, role=pb.INITIATOR,
                transport_id=b"quic", peer_id="12D3KooWGRUVh1ZWWrcVz6bx3YNkpyjF5ZoL48WRZvoC3jFTnXaa",
            )  # fmt: skip
            conn.endpoints.src_multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1"
            conn.timeline.open_ts = now - 900 if status == pb.CLOSED else now - 20
            conn.timeline.upgraded_ts = conn.timeline.open_ts + 8
            conn.timeline.close_ts = now if status == pb.CLOSED else 0
            conn.attribs.multiplexer = conn.attribs.encryption = ""
            conn.peer.protocols.append("/ipfs/id/1.0.0")
        state.node.listen_addrs.extend(["/ip4/127.0.0.1/tcp/4001"])
        state.node.protocols.extend(["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"])
        stats = state.protocols.add(protocol="/ipfs/ping/1.0.0", active_streams=1,
                                    streams_opened=self.quic)  # fmt: skip
        stats.traffic.traffic_in.cum_bytes = 32 * self.quic
        resources = state.subsystems.resources
        self.blocked += 1
        resources.blocked = self.blocked
        system = resources.scopes.add(name="system")
        system.usage.conns_inbound, system.usage.conns_outbound = 4, 5
        system.usage.streams_inbound, system.usage.streams_outbound = 10, 12
        system.usage.memory = 1 << 20
        ping = resources.scopes.add(name="protocol:/ipfs/ping/1.0.0")
        ping.usage.streams_total, ping.usage.memory = 2, 4096
        resources.scopes.add(name="service:libp2p.identify").usage.memory = 2048
        return state.SerializeToString()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query(api: str, expr: str) -> list[dict]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]["result"]


async def _wait_for_scrapes(api: str, process: subprocess.Popen, scrapes: int) -> None:
    deadline = trio.current_time() + MAX_WAIT_S
    while trio.current_time() < deadline:
        assert process.poll() is None, "prometheus exited"
        try:
            result = await trio.to_thread.run_sync(
                _query, api, 'count_over_time(up{job="py-libp2p"}[5m])'
            )
        except OSError:
            result = []  # not listening yet
        if result and float(result[0]["value"][1]) >= scrapes:
            up = await trio.to_thread.run_sync(_query, api, 'up{job="py-libp2p"}')
            assert up[0]["value"][1] == "1", "prometheus could not scrape /metrics"
            return
        await trio.sleep(0.5)
    pytest.fail(f"prometheus did not scrape {scrapes} times within {MAX_WAIT_S} s")


async def test_go_libp2p_dashboard_queries_return_data_through_a_real_prometheus(tmp_path: Path):
    binary = prometheus_binary()
    config = ServerConfig(port=0, metrics_port=0, token=TOKEN, interval_ms=250)
    async with open_introspection_server(FullNode(), config) as server:
        web = _free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: py-libp2p\n"
            f"    authorization:\n      type: Bearer\n      credentials: {TOKEN}\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{server.metrics.port}']\n"
        )
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            api = f"http://127.0.0.1:{web}"
            await _wait_for_scrapes(api, process, scrapes=12)
            empty = []
            for dashboard, panel, expr, cannot in QUERIES:
                if cannot:
                    continue
                result = await trio.to_thread.run_sync(_query, api, promql(expr))
                values = [float(row["value"][1]) for row in result]
                if not any(math.isfinite(v) for v in values):
                    empty.append(f"{dashboard} / {panel}: {expr} -> {result}")
            assert empty == [], "\n".join(empty)
            # and what it says is the snapshots' data: the ACTIVE connections, exactly
            active = await trio.to_thread.run_sync(_query, api, promql(QUERIES[0][2]))
            assert sum(float(r["value"][1]) for r in active) == CONNECTIONS + 1  # + QUIC
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
