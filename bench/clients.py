"""Benchmark clients, run as a separate process: ``python -m bench.clients MODE ...``.

A dashboard or a recorder is another process than the node, so the clients
of the benchmarks are too: the node's process (and its trio loop) pays only
for serving them. Each mode prints ``ready`` once its sessions are set up,
then its result line; every wait is bounded.

Modes::

    events URL KIND N K     N sessions; KIND intro subscribes to events; each reads
                            until it got K event frames (raw: the server sends only
                            event frames); prints "done MONOTONIC"
    pull URL KIND N M GAP   N sessions, M pulls each, GAP s apart; prints "result JSON"
                            (latencies in ms: ready signal sent -> snapshot received)
    overhead URL            one session pulling every 500 ms, one subscribed to events;
                            runs until stdin closes
    idle URL N              N sessions that connect and then only answer pings
    paused URL WINDOW_MS    one session: retention WINDOW_MS, state and event pushes
                            enabled, then paused; it never reads again

KIND is ``intro`` (the introspection server) or ``raw`` (a bare trio-websocket
server of the benchmark: no commands, frames only).
"""

from __future__ import annotations

import json
import sys
import time

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import HEADER_SIZE, MAX_MESSAGE_SIZE, payload_kind

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source
TIMEOUT_S = 120.0


def command(cmd: int, source: int = Source.STATE, config: pb.Configuration | None = None) -> bytes:
    message = pb.ClientCommand(id=1, command=cmd, source=source)  # type: ignore[arg-type]
    message.version.version = 1
    if config is not None:
        message.config.CopyFrom(config)
    return message.SerializeToString()


def kind(frame: bytes | str) -> str:
    if isinstance(frame, str):
        return "text"
    return payload_kind(memoryview(frame)[HEADER_SIZE:])


async def read_until(ws: WebSocketConnection, wanted: str) -> None:
    while kind(await ws.get_message()) != wanted:
        pass


def say(line: str) -> None:
    print(line, flush=True)


async def _open(url: str, stack: list[object], nursery: trio.Nursery) -> WebSocketConnection:
    # open_websocket_url is a context manager; keep every session open in its own task.
    ready = trio.Event()
    box: list[WebSocketConnection] = []
    done = trio.Event()

    async def hold() -> None:
        async with open_websocket_url(
            url, max_message_size=MAX_MESSAGE_SIZE, message_queue_size=64, connect_timeout=30
        ) as ws:
            box.append(ws)
            ready.set()
            await done.wait()

    nursery.start_soon(hold)
    await ready.wait()
    stack.append(done)
    return box[0]


async def events(url: str, mode: str, n: int, k: int) -> None:
    async with trio.open_nursery() as nursery:
        holders: list[object] = []
        sessions = [await _open(url, holders, nursery) for _ in range(n)]
        if mode == "intro":
            for ws in sessions:
                await read_until(ws, "state")  # runtime, then the latest snapshot (§4.2)
                await ws.send_message(command(Command.PUSH_ENABLE, Source.EVENTS))
                await read_until(ws, "response")
        say("ready")
        finished = 0

        async def drain(ws: WebSocketConnection) -> None:
            nonlocal finished
            got = 0
            while got < k:
                frame = await ws.get_message()
                # Both servers send event frames (the raw one the same bytes): the same
                # work per frame here, so that the two differ by the server alone.
                if kind(frame) == "event":
                    got += 1
            finished += 1

        with trio.fail_after(TIMEOUT_S):
            async with trio.open_nursery() as readers:
                for ws in sessions:
                    readers.start_soon(drain, ws)
        say(f"done {time.monotonic()!r}")
        for done in holders:
            done.set()  # type: ignore[attr-defined]


async def pull(url: str, mode: str, n: int, m: int, gap: float) -> None:
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        holders: list[object] = []
        sessions = [await _open(url, holders, nursery) for _ in range(n)]
        for ws in sessions:
            if mode == "intro":
                await read_until(ws, "state")
        say("ready")

        async def loop(ws: WebSocketConnection, offset: float) -> None:
            await trio.sleep(offset)
            for _ in range(m):
                await trio.sleep(gap)
                began = time.perf_counter()
                if mode == "intro":
                    await ws.send_message(command(Command.REQUEST, Source.STATE))
                    await read_until(ws, "state")
                else:
                    await ws.send_message(b"r")
                    await ws.get_message()
                latencies.append((time.perf_counter() - began) * 1000)

        with trio.fail_after(TIMEOUT_S):
            async with trio.open_nursery() as loops:
                for i, ws in enumerate(sessions):
                    # Spread the clients over the gap, as independent dashboards would be.
                    loops.start_soon(loop, ws, gap * i / max(1, n))
        say("result " + json.dumps(latencies))
        for done in holders:
            done.set()  # type: ignore[attr-defined]


async def _until_stdin_closes() -> None:
    stdin = trio.lowlevel.FdStream(0)
    while await stdin.receive_some(1024):
        pass


async def overhead(url: str) -> None:
    async with trio.open_nursery() as nursery:
        holders: list[object] = []
        puller = await _open(url, holders, nursery)
        listener = await _open(url, holders, nursery)
        await read_until(puller, "state")
        await read_until(listener, "state")
        await listener.send_message(command(Command.PUSH_ENABLE, Source.EVENTS))
        await read_until(listener, "response")

        async def pulling() -> None:
            while True:
                await trio.sleep(0.5)
                await puller.send_message(command(Command.REQUEST, Source.STATE))
                await read_until(puller, "state")

        async def listening() -> None:
            while True:
                await listener.get_message()

        nursery.start_soon(pulling)
        nursery.start_soon(listening)
        say("ready")
        await _until_stdin_closes()
        nursery.cancel_scope.cancel()


async def idle(url: str, n: int) -> None:
    async with trio.open_nursery() as nursery:
        holders: list[object] = []
        for _ in range(n):
            ws = await _open(url, holders, nursery)
            await read_until(ws, "state")
        say("ready")
        await _until_stdin_closes()
        nursery.cancel_scope.cancel()


async def paused(url: str, window_ms: int) -> None:
    async with trio.open_nursery() as nursery:
        holders: list[object] = []
        ws = await _open(url, holders, nursery)
        frame = await ws.get_message()
        while kind(frame) != "state":
            frame = await ws.get_message()
        config = pb.Configuration(retention_period_ms=window_ms)
        await ws.send_message(command(Command.HELLO, config=config))
        await read_until(ws, "response")
        for source in (Source.STATE, Source.EVENTS):
            await ws.send_message(command(Command.PUSH_ENABLE, source))
            await read_until(ws, "response")
        await ws.send_message(command(Command.PUSH_PAUSE))
        # Everything pushed until the pause arrives is read with the response.
        await read_until(ws, "response")
        say(f"ready {len(frame)}")
        await _until_stdin_closes()
        nursery.cancel_scope.cancel()


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "events":
        trio.run(events, url, rest[0], int(rest[1]), int(rest[2]))
    elif mode == "pull":
        trio.run(pull, url, rest[0], int(rest[1]), int(rest[2]), float(rest[3]))
    elif mode == "overhead":
        trio.run(overhead, url)
    elif mode == "idle":
        trio.run(idle, url, int(rest[0]))
    elif mode == "paused":
        trio.run(paused, url, int(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
