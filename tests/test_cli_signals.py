"""`serve` stops on SIGINT and SIGTERM by cancelling itself: every client gets the
server's 1001, never a cut or corrupt stream, and the process says "stopped"."""

from __future__ import annotations

import signal

import pytest
import trio
from cli_process import running
from trio_websocket import ConnectionClosed

from libp2p_introspection.client.connection import Command, Source, connect

LIMIT = 30  # seconds: a safety net, not an assertion


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_closes_every_session_with_1001_while_it_pushes(signum):
    args = ["-m", "libp2p_introspection", "serve", "--source", "mock", "--connections", "3",
            "--port", "0", "--interval-ms", "20"]  # fmt: skip
    with running(args) as (server, url):
        codes: list[int | None] = []

        async def client() -> None:
            async with connect(url) as session:
                await session.send(Command.PUSH_ENABLE, Source.STATE)
                await session.send(Command.PUSH_ENABLE, Source.EVENTS)
                for _ in range(5):
                    await session.receive()
                server.send_signal(signum)  # while snapshots and events stream
                try:
                    for _ in range(100_000):
                        await session.receive()
                except ConnectionClosed as closed:
                    codes.append(closed.reason.code)

        async def main() -> None:
            with trio.fail_after(LIMIT):
                await client()

        trio.run(main)
        assert server.wait(timeout=LIMIT) == 0
        assert server.stderr is not None
        stderr = server.stderr.read()
    assert codes == [1001]
    assert "stopped" in stderr and "Traceback" not in stderr
