"""Save recording: the dashboard's retained window written as a recording file.

``GET /api/recording/save`` answers with a recording (PROTOCOL.md §2, written
by the recorder's own :class:`~libp2p_introspection.protocol.recording.RecordingWriter`:
the file version, then checksummed records) of what the dashboard keeps now,
whatever its source (a live node, paused or not, or an opened recording):

1. the node's ``Runtime`` as it came (with the event types that only events
   declared, when the event that declared one is no longer kept), if the
   source sent one;
2. every stored snapshot and event, each the ``ServerMessage`` bytes the
   source sent (the store keeps them: :mod:`.store`), snapshots oldest first
   and each event where it arrived among them.

So ``inspect``, ``replay`` and the dashboard's own upload read back the same
snapshots and events the dashboard shows (what the page derives from a
previous snapshot, a connection it carries on as closed or a topic's message
rate, starts again at the file's first snapshot).

The file is never built whole: the answer is streamed, a chunk of about
:data:`CHUNK_BYTES` at a time (or one record, when a record is larger),
from the list of what the store held when the request came (new lists of
references: what the store drops meanwhile stays alive until the answer
ends, so one download can pin at most one store's worth, ``max_bytes`` +
``max_event_bytes``, 320 MiB by default). One download runs at a time;
another is answered 409 until it ends.

The route is a read, and a read of everything the node showed, so besides
the dashboard's Host and Origin guard (:class:`.guards.LocalOnly`) it is answered to
the dashboard's own page only: a browser request that another site, or
another local page, made (``Sec-Fetch-Site`` other than ``same-origin`` or
``none``, or an ``Origin`` not the dashboard's) is refused with 403, and the
answer carries ``Cross-Origin-Resource-Policy: same-origin`` and no CORS
header (:data:`.guards.SECURITY_HEADERS`), so no other page can read it.
Tools that send neither header (``curl``) are answered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from libp2p_introspection.dashboard.convert import JSON
from libp2p_introspection.dashboard.guards import LocalOnly
from libp2p_introspection.dashboard.store import Store, StoredEvent, StoredSnapshot
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import PROTOCOL_VERSION, encode_varint
from libp2p_introspection.protocol.recording import RecordingWriter

log = logging.getLogger(__name__)

#: What one chunk of the answer holds at least before it is sent, bytes.
CHUNK_BYTES = 1024 * 1024
#: Media type of the answer (what the page's "Open recording…" accepts).
MEDIA_TYPE = "application/octet-stream"
#: File name extension of recordings (the observer-toolkit's).
EXTENSION = ".mock"

#: ``ServerMessage.version`` = ``Version{version: 1}`` (field 1), serialized.
_VERSION = b"\x0a\x02\x08" + bytes((PROTOCOL_VERSION,))
#: Tags of ``ServerMessage.state``, ``.runtime`` and ``.event`` (length-delimited).
_TAGS = {"state": b"\x12", "runtime": b"\x1a", "event": b"\x22"}
_PROPERTY_TYPES = dict(pb.EventType.EventProperty.PropertyType.items())


def server_message(kind: str, payload: bytes) -> bytes:
    """``ServerMessage{version: 1, <kind>: payload}`` serialized, from the serialized
    ``payload`` (``kind``: ``state``, ``runtime`` or ``event``), without copying it into
    a message: byte for byte what the protobuf runtime makes of that message."""
    return b"".join((_VERSION, _TAGS[kind], encode_varint(len(payload)), payload))


def _event_type(data: JSON) -> pb.EventType:
    """An event type the store knows (shape of :func:`.convert_events.event_type_to_json`),
    as protobuf."""
    event_type = pb.EventType(name=data["name"])
    for prop in data["properties"]:
        kind = prop["type"]
        event_type.property_types.add(
            name=prop["name"],
            type=_PROPERTY_TYPES[kind] if kind in _PROPERTY_TYPES else int(kind),
            has_multiple=bool(prop["multiple"]),
        )
    return event_type


def _runtime_from_json(data: JSON) -> pb.Runtime:
    runtime = pb.Runtime(implementation=data["implementation"], version=data["version"],
                         platform=data["platform"], peer_id=data["peerId"])  # fmt: skip
    runtime.event_types.extend(_event_type(t) for t in data["eventTypes"])
    return runtime


def runtime_record(store: Store) -> bytes | None:
    """The ``Runtime`` record of a saved window (``ServerMessage`` bytes; ``None`` when the
    source sent none): as received, plus the event types the store learned from events
    (an event that declared one may no longer be kept)."""
    if store.runtime is None:
        return None
    if store.runtime_raw:
        message = pb.ServerMessage.FromString(store.runtime_raw)
        runtime = message.runtime
    else:  # a store filled without the original bytes (tests, tools)
        message = pb.ServerMessage()
        message.version.version = PROTOCOL_VERSION
        runtime = message.runtime
        runtime.CopyFrom(_runtime_from_json(store.runtime))
    declared = {t.name for t in runtime.event_types}
    missing = [t for name, t in store.event_types.items() if name not in declared]
    if not missing and store.runtime_raw:
        return store.runtime_raw
    runtime.event_types.extend(_event_type(t) for t in missing)
    return message.SerializeToString()


def ordered(snapshots: list[StoredSnapshot], events: list[StoredEvent]) -> Iterator[bytes]:
    """The records of the snapshots and events, each event before the first snapshot that
    arrived after it (snapshots oldest first, events in arrival order). Items stored
    without their original bytes are left out."""
    i = 0
    for snapshot in snapshots:
        while i < len(events) and events[i].seq < snapshot.events_before:
            if events[i].raw:
                yield events[i].raw
            i += 1
        if snapshot.raw:
            yield snapshot.raw
    for event in events[i:]:
        if event.raw:
            yield event.raw


def file_name(store: Store, snapshots: list[StoredSnapshot]) -> str:
    """The saved file's name: the node's short peer id, the window's first moment (UTC)
    and its length, ``12D3KooW-AAAAAA_20231114T221320Z_3s.mock``. Only letters,
    digits, ``-`` and ``_`` (the peer id is the source's data)."""
    peer = re.sub(r"[^A-Za-z0-9]", "", str((store.runtime or {}).get("peerId", "")))
    node = f"{peer[:8]}-{peer[-6:]}" if len(peer) > 16 else peer or "node"
    if not snapshots:
        return f"{node}{EXTENSION}"
    first, last = snapshots[0].ts, snapshots[-1].ts
    try:
        start = datetime.fromtimestamp(first / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    except (OverflowError, OSError, ValueError):  # a timestamp no calendar holds
        start = str(first)
    return f"{node}_{start}_{max(last - first, 0) // 1000}s{EXTENSION}"


class _Chunks:
    """The writer's target: keeps what it is given as a list of byte strings (no copy)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


def recording_chunks(
    runtime: bytes | None, records: Iterator[bytes], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The recording file of ``runtime`` (if any) then ``records``, in chunks of at least
    ``chunk_bytes`` (the last one may be smaller), written by :class:`RecordingWriter`."""
    target = _Chunks()
    writer = RecordingWriter(target, flush=False)  # type: ignore[arg-type]
    if runtime is not None:
        writer.write(runtime)
    for record in records:
        writer.write(record)
        if target.size >= chunk_bytes:
            yield target.take()
    writer.close()
    if target.size:
        yield target.take()


def write_window(store: Store, target: RecordingWriter) -> int:
    """Write the store's window (the Runtime, then its snapshots and events in order) with
    ``target``; returns the records written. For tools and tests; the route streams."""
    runtime = runtime_record(store)
    before = target.records
    if runtime is not None:
        target.write(runtime)
    for record in ordered(*store.window()):
        target.write(record)
    return target.records - before


def _own_page(request: Request) -> bool:
    """Whether a browser request comes from the dashboard's own page (or from no browser):
    the rule of the dashboard's commands (:meth:`.guards.LocalOnly.command_ok`), for a read."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or LocalOnly.same_origin(origin, request.headers.get("host"))


class SaveGate:
    """Lets one download of the window run at a time (trio thread only)."""

    def __init__(self) -> None:
        self.busy = False


class _Download(StreamingResponse):
    """The streamed file; frees the gate however the answer ends (sent, or the client
    gone before or while it was sent)."""

    def __init__(self, gate: SaveGate, chunks: AsyncIterator[bytes], name: str) -> None:
        super().__init__(chunks, media_type=MEDIA_TYPE, headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        })  # fmt: skip
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.gate.busy = False


def save_endpoint(get_store: Callable[[], Store]) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of ``GET /api/recording/save``; ``get_store()`` returns the
    store shown now (the model swaps it when the source changes). 404 when it holds no
    snapshot, 409 while another download runs, 403 for another page (module doc). The
    endpoint's ``gate`` attribute is its :class:`SaveGate`."""
    gate = SaveGate()

    def refuse(message: str, code: int) -> JSONResponse:
        return JSONResponse({"ok": False, "error": message}, status_code=code)

    async def save(request: Request) -> Response:
        if not _own_page(request):
            log.warning("refused to save the recording for another page (origin %r)",
                        request.headers.get("origin"))  # fmt: skip
            return refuse("only the dashboard's own page can save the recording", 403)
        store = get_store()
        snapshots, events = store.window()
        if not snapshots:
            return refuse("nothing to save yet: no snapshot is kept", 404)
        if gate.busy:
            return refuse("a recording is being saved; try again when it is done", 409)
        runtime = runtime_record(store)
        name = file_name(store, snapshots)
        log.info("saving %s: %d snapshots, %d events", name, len(snapshots), len(events))

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in recording_chunks(runtime, ordered(snapshots, events)):
                yield chunk
                await trio.lowlevel.checkpoint()

        gate.busy = True
        return _Download(gate, chunks(), name)

    save.gate = gate  # type: ignore[attr-defined]
    return save
