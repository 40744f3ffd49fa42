"""Memory of the server process: a paused client's retention window, and idle sessions.

The server is ``libp2p-introspect serve --source mock`` in its own process
(200 connections x 4 streams, ``--churn 0`` so every snapshot has the same
size, 20 DHT events/s) with a 50 ms base interval; its RSS and peak RSS
(VmRSS, VmHWM from ``/proc``) are read from outside. Clients are another
process.

* Paused client: it sets ``retention_period_ms`` = W, enables state and
  event pushes, and pauses. The server holds every pushed snapshot for W
  (§4.5), so it should hold about W / 50 ms snapshots, and no more however
  long the pause lasts; the per-session byte budget (32 MiB by default)
  caps it. RSS is read once the window is full (W + 2 s) and again W later:
  growth over the idle server (the baseline) is compared with the bytes
  the window holds (``expected``). Target: growth <= 1.5 x expected + 8 MiB,
  and no growth between the two readings beyond 4 MiB (bounded).
* Idle sessions: 10, then 25, then 50 sessions that connect and do nothing.
  Reported: KiB per session at each step (growth over the baseline divided
  by the sessions). Target: linear, i.e. the per-session cost at 50 within
  a factor 1.5 of the one at 10 (and no more than 1 MiB each).
"""

from __future__ import annotations

import trio

from bench.common import LineProcess, Mode, Result, python_command, rss_kib

INTERVAL_MS = 50
BUDGET = 32 * 1024 * 1024


def _serve_command() -> list[str]:
    return python_command(
        "libp2p_introspection",
        "serve",
        "--source",
        "mock",
        "--port",
        "0",
        "--interval-ms",
        str(INTERVAL_MS),
        "--connections",
        "200",
        "--streams",
        "4",
        "--churn",
        "0",
        "--max-sessions",
        "64",
    )


async def _server() -> tuple[LineProcess, str]:
    server = await LineProcess.start(_serve_command())
    url = await server.expect("ws://", timeout=60)
    return server, "ws://" + url


async def _settled_rss(pid: int, seconds: float) -> int:
    """RSS (KiB) after ``seconds``, the median of readings over the last second."""
    await trio.sleep(max(0.0, seconds - 1))
    readings = []
    for _ in range(5):
        readings.append(rss_kib(pid)[0])
        await trio.sleep(0.2)
    return sorted(readings)[len(readings) // 2]


async def _paused(window_ms: int) -> dict[str, float]:
    server, url = await _server()
    try:
        pid = server.process.pid
        base = await _settled_rss(pid, 3)
        client = await LineProcess.start(
            python_command("bench.clients", "paused", url, str(window_ms))
        )
        try:
            frame = int(await client.expect("ready"))
            full = await _settled_rss(pid, window_ms / 1000 + 2)
            later = await _settled_rss(pid, window_ms / 1000)
            peak = rss_kib(pid)[1]
        finally:
            await client.stop()
    finally:
        await server.stop()
    expected = min(BUDGET, window_ms / INTERVAL_MS * frame) / 1024
    return {
        "base_kib": base,
        "full_kib": full,
        "later_kib": later,
        "peak_kib": peak,
        "expected_kib": expected,
        "frame_bytes": frame,
    }


async def _idle(steps: tuple[int, ...]) -> dict[int, float]:
    server, url = await _server()
    clients: list[LineProcess] = []
    per_session: dict[int, float] = {}
    try:
        pid = server.process.pid
        base = await _settled_rss(pid, 3)
        per_session[0] = base
        opened = 0
        for n in steps:
            client = await LineProcess.start(
                python_command("bench.clients", "idle", url, str(n - opened))
            )
            clients.append(client)
            await client.expect("ready", timeout=120)
            opened = n
            rss = await _settled_rss(pid, 2)
            per_session[n] = (rss - base) / n
        per_session[-1] = rss_kib(pid)[1]
    finally:
        for client in clients:
            await client.stop()
        await server.stop()
    return per_session


def run(mode: Mode) -> list[Result]:
    windows = mode.pick((2_000, 4_000, 8_000, 30_000), (1_000, 2_000, 4_000), (500,))
    results = []
    for window in windows:
        m = trio.run(_paused, window)
        growth = (m["later_kib"] - m["base_kib"]) / 1024
        expected = m["expected_kib"] / 1024
        drift = (m["later_kib"] - m["full_kib"]) / 1024
        ok = growth <= 1.5 * expected + 8 and drift <= 4
        capped = " (byte budget)" if expected * 1024 * 1024 >= BUDGET else ""
        results.append(
            Result(
                f"paused client, window {window / 1000:g} s",
                growth,
                "MiB",
                expected,
                growth / expected if expected else None,
                "<= 1.5x held + 8 MiB, flat",
                ok,
                note=(
                    f"RSS growth over the idle server vs the bytes held{capped}; "
                    f"{m['frame_bytes'] / 1000:.0f} kB snapshots; idle {m['base_kib'] / 1024:.0f}"
                    f" MiB, peak {m['peak_kib'] / 1024:.0f} MiB, growth after the window "
                    f"filled {drift:+.1f} MiB"
                ),
                extra=m,
            )
        )
    steps = mode.pick((10, 25, 50), (10, 25, 50), (2, 4))
    per = trio.run(_idle, steps)
    first, last = per[steps[0]], per[steps[-1]]
    ok = last <= 1.5 * first + 16 and last <= 1024
    for n in steps:
        results.append(
            Result(
                f"idle sessions: {n}",
                per[n],
                "KiB",
                first if n != steps[0] else None,
                per[n] / first if n != steps[0] and first > 0 else None,
                "per session <= 1.5x the one at 10" if n == steps[-1] else "",
                ok if n == steps[-1] else None,
                note=(
                    f"RSS growth per session; idle server {per[0] / 1024:.0f} MiB, "
                    f"peak with {steps[-1]} sessions {per[-1] / 1024:.0f} MiB"
                    if n == steps[-1]
                    else ""
                ),
            )
        )
    return results
