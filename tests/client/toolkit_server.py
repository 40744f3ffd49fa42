"""A small server that speaks as libp2p's observer-toolkit mock server does (PROTOCOL.md §2).

Each live record goes out as a WebSocket **text** frame holding the framed
record's bytes as a "binary string" (every character one byte, U+0000-U+00FF),
and ``ServerMessage.version`` is left unset. It serves the records of a
recording (the toolkit's own fixtures leave the version unset too), in file
order: the ``Runtime`` and the first snapshot on connect, then one snapshot
per ready signal (``REQUEST`` + ``STATE``), preceded by the events recorded
before it once the client subscribed (``PUSH_ENABLE`` + ``EVENTS``); ``HELLO``
gets an ``OK`` response. When it runs out of snapshots it closes the session
(1000).

``poison_after``: after that many snapshots, send a text frame with a
character above U+00FF in it (a frame that is not a binary string) instead of
the next snapshot. The close code the client sent back is kept in
:attr:`ToolkitStyleServer.close_codes`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import encode_frame
from libp2p_introspection.protocol.recording import RecordingReader

Command = pb.ClientCommand.Command
Source = pb.ClientCommand.Source


def binary_string(frame: bytes) -> str:
    """``frame`` spelled as a binary string: one character per byte."""
    return frame.decode("latin-1")


def unversioned(message: pb.ServerMessage) -> bytes:
    """``message`` serialized with ``version`` cleared, as the toolkit sends it."""
    message.ClearField("version")
    return message.SerializeToString()


class ToolkitStyleServer:
    """Serves ``path``'s records, toolkit style (module doc); run with ``nursery.start``."""

    def __init__(self, path: Path, *, poison_after: int | None = None) -> None:
        self.runtime = b""
        self.items: list[tuple[str, bytes]] = []  # (kind, ServerMessage bytes), file order
        with RecordingReader(path) as reader:
            for record in reader:
                message = record.message()
                kind = message.WhichOneof("payload")
                if kind == "runtime" and not self.runtime:
                    self.runtime = unversioned(message)
                elif kind in ("state", "event"):
                    self.items.append((kind, unversioned(message)))
        self.poison_after = poison_after
        self.close_codes: list[int | None] = []
        #: The ServerMessage bytes sent, in order (every session).
        self.sent: list[bytes] = []
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port (:attr:`port`) until cancelled."""
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(serve_websocket, self._handler, "127.0.0.1", 0, None)
            self.port = listening.port
            task_status.started()

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"ws://127.0.0.1:{self.port}/introspect"

    async def _send(self, ws: WebSocketConnection, data: bytes) -> None:
        await ws.send_message(binary_string(encode_frame(data)))
        self.sent.append(data)

    async def _handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        position = 0  # next item to send
        subscribed = False
        snapshots = 0
        try:
            await self._send(ws, self.runtime)
            position, snapshots = await self._next_state(ws, position, snapshots, False)
            while True:
                command = pb.ClientCommand.FromString(await ws.get_message())
                if command.command == Command.HELLO:
                    reply = pb.ServerMessage()
                    reply.response.id = command.id
                    await self._send(ws, unversioned(reply))
                elif command.command == Command.PUSH_ENABLE and command.source == Source.EVENTS:
                    subscribed = True
                elif command.command == Command.REQUEST and command.source == Source.STATE:
                    if self.poison_after is not None and snapshots >= self.poison_after:
                        await ws.send_message("caf\u00e9 \u2603 is not a binary string")
                        while True:  # until the client closes (ConnectionClosed)
                            await ws.get_message()
                    if not any(kind == "state" for kind, _ in self.items[position:]):
                        await ws.aclose()
                        return
                    position, snapshots = await self._next_state(
                        ws, position, snapshots, subscribed
                    )
        except ConnectionClosed as closed:
            self.close_codes.append(closed.reason.code if closed.reason else None)

    async def _next_state(
        self, ws: WebSocketConnection, position: int, snapshots: int, events: bool
    ) -> tuple[int, int]:
        """Send the items up to the next snapshot (events only when ``events``)."""
        while position < len(self.items):
            kind, data = self.items[position]
            position += 1
            if kind == "event":
                if events:
                    await self._send(ws, data)
                continue
            await self._send(ws, data)
            return position, snapshots + 1
        return position, snapshots


@contextlib.asynccontextmanager
async def toolkit_style_server(path: Path, **options: int):
    """Run a :class:`ToolkitStyleServer` for the block's duration."""
    server = ToolkitStyleServer(path, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        nursery.cancel_scope.cancel()
