"""Soak: 30 clients mixing pull, push, pause/resume and reconnects against the demo
network, a fixed amount of work each (never a rate). Afterwards: no error logged, every session closed, and the
memory the server still holds (traced allocations made by the server, the session
machine and the WebSocket layer) back under SERVER_MEMORY_BOUND."""

from __future__ import annotations

import gc
import logging
import random
import tracemalloc

import trio
from trio_websocket import ConnectionClosed

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source
from libp2p_introspection.server import IntrospectionServer, ServerConfig

CLIENTS = 30
#: Sessions each client opens, one after the other (each of 2-4 pulls, pushed
#: snapshots, pause/resume cycles or idle steps).
SESSIONS_PER_CLIENT = 3
#: A safety net for the whole soak, seconds: not an assertion about speed.
LIMIT = 240
#: Bytes of server-side allocations still alive once every session is closed. Measured:
#: about 0.1-0.3 MB (the latest snapshot, closed-session records, the listener).
SERVER_MEMORY_BOUND = 2 * 1024 * 1024
SERVER_FILES = ("libp2p_introspection/server/", "libp2p_introspection/protocol/",
                "trio_websocket/", "wsproto/")  # fmt: skip


def _server_bytes(snapshot: tracemalloc.Snapshot) -> int:
    filters = [tracemalloc.Filter(True, f"*{part}*", all_frames=True) for part in SERVER_FILES]
    return sum(stat.size for stat in snapshot.filter_traces(filters).statistics("filename"))


async def _client(url: str, rng: random.Random, done: dict[str, int]) -> None:
    # A fixed amount of work, never a rate: a slow machine takes longer, nothing fails.
    for _ in range(SESSIONS_PER_CLIENT):
        mode = rng.choice(["pull", "push", "pause", "idle"])
        try:
            async with connect(url) as client:
                done["connects"] += 1
                await client.receive_kind("runtime")
                await client.receive_kind("state")
                if rng.random() < 0.7:
                    await client.send(Command.PUSH_ENABLE, Source.EVENTS)
                if mode in ("push", "pause"):
                    await client.send(Command.PUSH_ENABLE, Source.STATE)
                for _ in range(rng.randint(2, 4)):
                    if mode == "pull":
                        await client.ready()
                        await client.receive_kind("state")
                        done["pulled"] += 1
                    elif mode == "pause":
                        await client.send(Command.PUSH_PAUSE)
                        await trio.sleep(rng.uniform(0.2, 1.0))  # reads nothing meanwhile
                        await client.send(Command.PUSH_RESUME)
                        await client.receive_kind("state")  # what was held, then more
                        done["pushed"] += 1
                    elif mode == "push":
                        await client.receive_kind("state")
                        done["pushed"] += 1
                    else:
                        await trio.sleep(0.3)
                done[mode] += 1
        except ConnectionClosed:
            done["closed_by_server"] += 1
        await trio.sleep(rng.uniform(0, 0.3))  # then reconnect


async def test_soak_thirty_mixed_clients_against_the_demo_network(caplog):
    from libp2p_introspection.demo import DemoNetwork, DemoOptions
    from libp2p_introspection.introspector import HostIntrospector

    caplog.set_level(logging.WARNING, logger="libp2p_introspection")
    introspectors: list[HostIntrospector] = []
    options = DemoOptions(
        nodes=4, seed=11, churn=True, churn_interval_s=6.0, work_rate=4.0,
        on_observed_ready=lambda n: introspectors.append(HostIntrospector(n.host, dht=n.dht)),
    )  # fmt: skip
    counts = {"connects": 0, "pulled": 0, "pushed": 0, "closed_by_server": 0,
              "pull": 0, "push": 0, "pause": 0, "idle": 0}  # fmt: skip
    rng = random.Random(5)
    tracemalloc.start(8)
    try:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                await nursery.start(DemoNetwork(options).run)
                server = IntrospectionServer(
                    introspectors[0], ServerConfig(port=0, interval_ms=200, max_sessions=64)
                )
                await nursery.start(server.run)
                gc.collect()
                before = _server_bytes(tracemalloc.take_snapshot())
                async with trio.open_nursery() as clients:
                    for _ in range(CLIENTS):
                        clients.start_soon(_client, server.url, random.Random(rng.random()), counts)
                while server.hub.sessions:  # the server's side of the last closes
                    await trio.sleep(0.05)
                gc.collect()
                after = _server_bytes(tracemalloc.take_snapshot())
                nursery.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
    # Our errors only: py-libp2p logs connection resets of churned nodes at ERROR.
    errors = [r for r in caplog.records
              if r.levelno >= logging.ERROR and r.name.startswith("libp2p_introspection")]  # fmt: skip
    assert not errors, [r.getMessage() for r in errors]
    assert counts["connects"] == CLIENTS * SESSIONS_PER_CLIENT
    assert counts["closed_by_server"] == 0
    # Every session did all its work, whatever the machine's speed; each mode was used.
    assert sum(counts[mode] for mode in ("pull", "push", "pause", "idle")) == counts["connects"]
    assert min(counts[mode] for mode in ("pull", "push", "pause", "idle")) > 0
    assert server.sessions_served == counts["connects"]
    assert not server.hub.sessions
    print(f"soak: {counts}; server-held memory before {before} B, after {after} B")
    assert after - before < SERVER_MEMORY_BOUND
