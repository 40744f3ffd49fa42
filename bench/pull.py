"""Pull latency: ready signal -> snapshot received, when a snapshot is waiting.

Subject: the introspection server serving the synthetic node (the ``serve
--source mock`` default, 50 connections x 4 streams, DHT of 40 peers, 20
events/s) with a 50 ms base interval. N clients (another process) each
loop: sleep 100 ms (so a newer snapshot than the one they hold exists),
send ``REQUEST STATE`` and time until the ``State`` arrives (§4.3: sent at
once). The clients are spread over the 100 ms, as independent dashboards
would be; the server's snapshot clock and event source keep running.

Baseline: a bare trio-websocket server answering each 1-byte request with a
frame of the same size as the snapshot: the loopback round trip of that many
bytes through trio-websocket.

Reported: p50 and p99 over every pull of every client (ms); ratio = subject /
baseline (lower is better); target: p99 < 20 ms with 20 clients.
"""

from __future__ import annotations

import json

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from bench.common import LineProcess, Mode, Result, percentile, python_command
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.sources.synthetic import SyntheticSource

GAP_S = 0.1


async def _clients(url: str, kind: str, n: int, m: int) -> list[float]:
    proc = await LineProcess.start(
        python_command("bench.clients", "pull", url, kind, str(n), str(m), str(GAP_S))
    )
    try:
        await proc.expect("ready")
        return json.loads(await proc.expect("result", timeout=120))
    finally:
        await proc.stop()


async def _subject(n: int, m: int) -> tuple[list[float], int]:
    server = IntrospectionServer(SyntheticSource(), ServerConfig(port=0, interval_ms=50))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert server.hub.latest is not None
        size = len(server.hub.latest.frame)
        latencies = await _clients(server.url, "intro", n, m)
        nursery.cancel_scope.cancel()
    return latencies, size


async def _baseline(n: int, m: int, size: int) -> list[float]:
    frame = b"\x01" * size

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.get_message()
                await ws.send_message(frame)
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1", 0, None, handler_nursery=nursery, task_status=task_status
            )
        )
        latencies = await _clients(f"ws://127.0.0.1:{listener.port}/", "raw", n, m)
        nursery.cancel_scope.cancel()
    return latencies


def run(mode: Mode) -> list[Result]:
    results = []
    for n in (1, 20):
        m = mode.pick(200, 50, 5) if n == 1 else mode.pick(50, 20, 3)
        subject, size = trio.run(_subject, n, m)
        baseline = trio.run(_baseline, n, m, size)
        for q in (50, 99):
            value, base = percentile(subject, q), percentile(baseline, q)
            target = "< 20 ms" if (q == 99 and n == 20) else ""
            results.append(
                Result(
                    f"pull p{q}, {n} client{'s' if n > 1 else ''}",
                    value,
                    "ms",
                    base,
                    value / base,
                    target,
                    (value < 20.0) if target else None,
                    note=(
                        f"{len(subject)} pulls of a {size / 1000:.0f} kB snapshot"
                        if q == 50
                        else ""
                    ),
                    extra={"subject": subject, "baseline": baseline} if q == 50 else {},
                )
            )
    return results
