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
``max_event_bytes``, 320 MiB by default). Its size is known in advance and
sent as ``Content-Length``. One download runs at a time; another is
answered 409 until it ends. ``HEAD`` answers the same headers without
writing anything or taking the slot.

A download has a deadline: :data:`GRACE_S` plus its size at
:data:`MIN_RATE_BPS` (1 MiB/s on average: 130 s for 100 MiB), so a client
reading slowly cannot hold the one slot for long. Past it, the answer stops
at the next chunk (a chunk whose write makes no progress is cut by the
server's send timeout, 15 s) and the connection is closed: the body is
shorter than its ``Content-Length``, which browsers, ``curl`` and Python's
``http.client`` report as a failed, incomplete transfer, never as a file.

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
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from libp2p_introspection.dashboard.bodies import JSONAnswer
from libp2p_introspection.dashboard.caps import capped
from libp2p_introspection.dashboard.convert import JSON
from libp2p_introspection.dashboard.convert_events import MAX_NAME
from libp2p_introspection.dashboard.guards import LocalOnly
from libp2p_introspection.dashboard.store import Store, StoredEvent, StoredSnapshot
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import PROTOCOL_VERSION, encode_varint
from libp2p_introspection.protocol.recording import RECORD_HEADER_SIZE, RecordingWriter

log = logging.getLogger(__name__)

#: What one chunk of the answer holds at least before it is sent, bytes.
CHUNK_BYTES = 1024 * 1024
#: Media type of the answer (what the page's "Open recording…" accepts).
MEDIA_TYPE = "application/octet-stream"
#: File name extension of recordings (the observer-toolkit's).
EXTENSION = ".mock"
#: The slowest a download may go on average, bytes/s (with :data:`GRACE_S`: module doc).
MIN_RATE_BPS = 1024 * 1024
#: What a download may take on top of its size at :data:`MIN_RATE_BPS`, seconds.
GRACE_S = 30.0

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
    (an event that declared one may no longer be kept), each as the source sent it
    (:attr:`.store.Store.event_types_raw`; never rebuilt from the page's JSON, whose
    names are shortened). Only a store that keeps no original bytes at all (tests,
    tools) has its runtime and types built from what it shows."""
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
    # The store knows types by their display name (capped): compare in those terms.
    declared = {capped(t.name, MAX_NAME) for t in runtime.event_types}
    missing: list[pb.EventType] = []
    for name, data in store.event_types.items():
        if name in declared:
            continue
        raw = store.event_types_raw.get(name)
        if raw:
            missing.append(pb.EventType.FromString(raw))
        elif not store.runtime_raw:
            missing.append(_event_type(data))
    if not missing and store.runtime_raw:
        return store.runtime_raw
    runtime.event_types.extend(missing)
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


def recording_size(runtime: bytes | None, records: list[bytes]) -> int:
    """The size of the file :func:`recording_chunks` writes for ``runtime`` and
    ``records``, bytes (the file header, then each record's header and bytes)."""
    header = RecordingWriter(_Chunks(), flush=False).bytes_written  # type: ignore[arg-type]
    count = len(records) + (runtime is not None)
    return header + count * RECORD_HEADER_SIZE + sum(map(len, records)) + len(runtime or b"")


def download_deadline_s(
    size: int, min_rate_bps: float = MIN_RATE_BPS, grace_s: float = GRACE_S
) -> float:
    """How long a download of ``size`` bytes may take at most, seconds: ``grace_s`` plus
    ``size`` at ``min_rate_bps`` (bytes/s)."""
    return grace_s + size / min_rate_bps


class _Download(Response):
    """The streamed file (``Content-Length`` known in advance: a download cut short is a
    short body, which every client reports as an incomplete transfer).

    Sent with ASGI ``send`` directly, one chunk at a time; a second task only
    notes the client's disconnect, which the sender reads between chunks
    (nothing ever cancels a ``send`` halfway: see :class:`.serving.CompleteSends`).
    The download stops, short, when the client is gone or at its deadline
    (``deadline_s`` after it started, by ``clock``, seconds). Frees the gate
    however the answer ends."""

    def __init__(self, gate: SaveGate, runtime: bytes | None, records: list[bytes],
                 name: str, headers: dict[str, str], *, deadline_s: float,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        super().__init__(media_type=MEDIA_TYPE, headers=headers)
        self.size = int(headers["Content-Length"])
        self.gate, self.runtime, self.records, self.name = gate, runtime, records, name
        self.deadline_s, self.clock = deadline_s, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            gone = trio.Event()

            async def note_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(note_disconnect)
                try:
                    await self._stream(send, gone)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self.gate.busy = False

    async def _stream(self, send: Send, gone: trio.Event) -> None:
        deadline = self.clock() + self.deadline_s
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})  # fmt: skip
        sent = 0
        for chunk in recording_chunks(self.runtime, iter(self.records)):
            if gone.is_set():
                log.info("a download of %s ended: the client left", self.name)
                return
            if self.clock() > deadline:
                log.warning("cut the download of %s short at %d of %d bytes: the client took "
                            "longer than the %.0f s its size allows", self.name, sent, self.size,
                            self.deadline_s)  # fmt: skip
                return  # hypercorn then closes the connection: the body is short
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
            await trio.lowlevel.checkpoint()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def save_endpoint(
    get_store: Callable[[], Store],
    *,
    min_rate_bps: float = MIN_RATE_BPS,
    grace_s: float = GRACE_S,
    clock: Callable[[], float] = trio.current_time,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of ``GET /api/recording/save``; ``get_store()`` returns the
    store shown now (the model swaps it when the source changes). 404 when it holds no
    snapshot, 409 while another download runs, 403 for another page (module doc);
    ``HEAD`` answers a download's headers without writing the file or taking the slot.
    A download is cut short after :func:`download_deadline_s` of its size
    (``min_rate_bps``, bytes/s; ``grace_s``, seconds; by ``clock``, seconds).
    The endpoint's ``gate`` attribute is its :class:`SaveGate`."""
    gate = SaveGate()

    def refuse(message: str, code: int) -> JSONAnswer:
        return JSONAnswer({"ok": False, "error": message}, status_code=code)

    async def save(request: Request) -> Response:
        if not _own_page(request):
            log.warning("refused to save the recording for another page (origin %r)",
                        request.headers.get("origin"))  # fmt: skip
            return refuse("only the dashboard's own page can save the recording", 403)
        store = get_store()
        snapshots, events = store.window()
        if not snapshots:
            return refuse("nothing to save yet: no snapshot is kept", 404)
        runtime = runtime_record(store)
        records = list(ordered(snapshots, events))
        name = file_name(store, snapshots)
        size = recording_size(runtime, records)
        deadline_s = download_deadline_s(size, min_rate_bps, grace_s)
        headers = {"Content-Disposition": f'attachment; filename="{name}"',
                   "Content-Length": str(size), "Cache-Control": "no-store"}  # fmt: skip
        if request.method == "HEAD":  # the headers only: no file is written
            return Response(media_type=MEDIA_TYPE, headers=headers)
        if gate.busy:
            return refuse("a recording is being saved; try again when it is done", 409)
        log.info("saving %s: %d snapshots, %d events, %d bytes (at most %.0f s)",
                 name, len(snapshots), len(events), size, deadline_s)  # fmt: skip
        gate.busy = True
        return _Download(gate, runtime, records, name, headers, deadline_s=deadline_s,
                         clock=clock)  # fmt: skip

    save.gate = gate  # type: ignore[attr-defined]
    return save
