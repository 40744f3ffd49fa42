"""HTTP routes and the browser feed (Starlette; served on trio by hypercorn).

Routes (all on the dashboard's own address, 127.0.0.1 by default):

- ``GET /``: the page; ``GET /static/...``: its scripts, styles and vendored libraries.
- ``WS /feed``: the browser feed. The server sends JSON arrays of messages
  (shapes in :mod:`.model`): first a ``hello``, then ``snapshot``, ``delta``,
  ``event``, ``runtime`` and ``status`` messages as they happen (a page that
  falls behind gets a fresh ``hello`` instead, see :mod:`.browsers`). The
  page sends two things on it: the text ``resync`` when it was sent a delta
  of a snapshot it has not (it gets a fresh ``hello``, as if it had fallen
  behind); and ``streams?QUERY`` when it shows a page of streams
  (``QUERY``: ``/api/streams``'s parameters but ``ts``, checked as there, at most
  8 KiB; ``streams`` alone: none), after which every snapshot message is
  followed by that page's ``streams`` answer (:mod:`.streams_api`; a bad
  ``QUERY`` stops them, and is otherwise ignored); anything else it sends is
  ignored; a message over 64 KiB closes it with 1009 (see :mod:`.serving`). At
  most the hub's ``max_pages`` feeds are open at once (16 by default); beyond
  that the upgrade is answered with HTTP 503 and the reason.
- ``WS`` any other path: refused with 404 and a line of text saying that this is
  the dashboard, not an introspection endpoint, and naming the endpoint it
  follows (for a protocol client pointed at this port by mistake).
- ``GET /api/status``: the ``STATUS`` object.
- ``GET /api/snapshot?ts=MS``: the stored snapshot the page shows for the
  moment ``MS`` (the newest at or before it); the latest without ``ts``; 404
  when the store is empty. With ``&form=page``: its ``PAGE_SNAPSHOT``
  (:mod:`.page_json`: without its streams, which ``/api/streams`` pages).
- ``GET /api/streams?ts=MS&page=P&size=N&sort=FIELD&dir=asc|desc&find=TEXT&status=S&conn=ID``:
  one page of the streams of the moment ``MS`` (the latest without it), sorted
  and filtered (:mod:`.streams_api`, which gives the shapes); 400 with the
  reason for a bad parameter, 404 when the store is empty.
- ``GET /api/connection-series?id=HEX``: one connection's traffic over the
  stored snapshots (``[{"ts", "bwIn", "bwOut", "in", "out", "status"}]``).
- ``GET /api/events?until=MS&type=A&type=B&limit=N``: stored events.
- ``POST /api/pause``, ``POST /api/resume``: pause or resume the live feed.
- ``POST /api/connect`` with ``{"url": "ws://HOST:PORT/introspect"}`` (or
  ``"HOST:PORT"``), as ``application/json``: show the live node there. The introspection token, if
  any, is sent only to the server the dashboard was started for (see
  :mod:`.feed`), never to another URL given here. The body is read up to
  :data:`~.bodies.MAX_COMMAND_BODY_BYTES` (4 KiB) and no further: 413 beyond, 400 for
  anything but a JSON object (nesting included: never a 500).
- ``GET /api/nodes``: the Nodes view's rows (``NODES`` of :mod:`.nodes`, with
  ``"focus"``); 404 when the dashboard keeps no Nodes view.
- ``POST /api/nodes/add`` with ``{"url": ...}``: follow that server in the Nodes
  view (409 when it follows its most already); ``POST /api/nodes/remove`` and
  ``POST /api/nodes/focus`` with ``{"id": "n3"}``: stop following a node added
  by URL, or show that node in every other view (as ``/api/connect`` its URL
  would); 404 for an id not listed. Bodies as ``/api/connect``'s.
- ``POST /api/recording``: the body is a recording file (raw bytes; its name
  in the ``X-File-Name`` header), at most ``max_upload_bytes``; shows it. The
  body is read as it comes, into a spooled temporary file (memory up to
  1 MiB, then an unnamed file on disk, gone when the request ends, whichever
  way it ends), and refused with 413 as soon as it passes the limit (or at
  once when its ``Content-Length`` says it will). One upload at a time:
  while one is read or loaded, another is answered 409 with the reason, once
  its body is read and dropped (the same limit and deadline; past them, at
  once, and the connection closed). The whole body must arrive within ``upload_timeout_s``
  (120 s by default: 256 MiB takes a few seconds on loopback), else 408.
- ``GET /api/recording/save``: what the dashboard keeps, as a recording file
  (streamed; the dashboard's own page only): see :mod:`.save`.
- ``POST /api/pause`` and ``/api/resume`` read no body; the ``GET`` routes
  read only their query string (bounded, with the request's headers, by
  the HTTP server: 16 KiB).

Commands answer ``{"ok": true, "status": STATUS}`` or ``{"ok": false,
"error": "..."}`` with a 4xx code.

Every request passes the guards of :mod:`.guards` first: a ``Host`` that is
not a loopback name or the bound address, or an ``Origin`` of another site, is
refused with 403, and so is a command (every ``POST``) that a browser sends
from any page but the dashboard's own; ``/api/connect`` wants an
``application/json`` body (415 otherwise: an HTML form cannot send one).
Every HTTP answer carries the security headers and the Content-Security-Policy
that :mod:`.guards` defines. Bodies are read as :mod:`.bodies` says: bounded
in size and time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from libp2p_introspection import config as defaults
from libp2p_introspection.dashboard.bodies import (
    MAX_COMMAND_BODY_BYTES,
    UPLOAD_TIMEOUT_S,
    BadRequest,
    BodyTooLarge,
    JSONAnswer,
    UploadGate,
    UploadTimedOut,
    discard_body,
    normalize_url,
    read_small_body,
    spool_body,
)
from libp2p_introspection.dashboard.browsers import TooManyPages
from libp2p_introspection.dashboard.convert import dumps
from libp2p_introspection.dashboard.guards import (
    BadQuery,
    LocalOnly,
    QuietDisconnects,
    SecurityHeaders,
)
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.nodes import FleetFull
from libp2p_introspection.dashboard.page_json import pack
from libp2p_introspection.dashboard.recording import (
    DEFAULT_MAX_UPLOAD_BYTES,
    RecordingLoadError,
    load_recording,
)
from libp2p_introspection.dashboard.save import save_endpoint
from libp2p_introspection.dashboard.streams_api import StreamQuery

log = logging.getLogger(__name__)

#: The page's files.
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: A browser that takes longer than this to accept one feed message is dropped, seconds.
BROWSER_SEND_TIMEOUT_S = 30.0
#: Headers of the text that answers a WebSocket upgrade to a path other than /feed.
_TEXT_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def create_app(
    model: DashboardModel,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    bind_host: str = defaults.DEFAULT_HOST,
    upload_timeout_s: float = UPLOAD_TIMEOUT_S,
) -> Starlette:
    """The Starlette application serving ``model`` (routes in the module doc).

    ``app.state.uploads`` is its :class:`UploadGate`.
    """
    uploads = UploadGate()

    def ok() -> JSONAnswer:
        return JSONAnswer({"ok": True, "status": model.status()})

    def refuse(message: str, code: int = 400) -> JSONAnswer:
        return JSONAnswer({"ok": False, "error": message}, status_code=code)

    def close_with(message: str, code: int) -> JSONAnswer:
        # The rest of the body is not read: close the connection rather than wait for it.
        return JSONAnswer({"ok": False, "error": message}, status_code=code,
                          headers={"Connection": "close"})  # fmt: skip

    def too_large(message: str) -> JSONAnswer:
        return close_with(message, 413)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def status(request: Request) -> Response:
        return JSONAnswer(model.status())

    async def snapshot(request: Request) -> Response:
        raw = request.query_params.get("ts")
        try:
            stored = model.store.at(int(raw)) if raw else model.store.latest
        except ValueError:
            return refuse("ts must be an integer (ms since the epoch)")
        if stored is None:
            return refuse("no snapshot yet", 404)
        form = request.query_params.get("form", "")
        if form == "page":
            return Response(dumps(pack(stored.data)), media_type="application/json")
        if form:
            return refuse("form must be page, or absent")
        return Response(stored.text, media_type="application/json")

    async def streams(request: Request) -> Response:
        try:
            query = StreamQuery.parse(request.query_params)
        except BadQuery as exc:
            return refuse(str(exc))
        answer = model.streams.answer(model.store, query)
        if answer is None:
            return refuse("no snapshot at or before that moment", 404)
        return Response(dumps(answer), media_type="application/json")

    async def connection_series(request: Request) -> Response:
        conn_id = request.query_params.get("id", "")
        return JSONAnswer(model.store.connection_series(conn_id))

    async def events(request: Request) -> Response:
        params = request.query_params
        try:
            until = int(params["until"]) if "until" in params else None
            limit = int(params["limit"]) if "limit" in params else None
        except ValueError:
            return refuse("until and limit must be integers")
        types = params.getlist("type") or None
        chosen = model.store.stored_events(until_ts=until, types=types, limit=limit)
        return Response("[" + ",".join(e.text for e in chosen) + "]", media_type="application/json")

    async def pause(request: Request) -> Response:
        if model.mode != "live":
            return refuse("a recording is shown: there is no live feed to pause", 409)
        model.pause()
        return ok()

    async def resume(request: Request) -> Response:
        if model.mode != "live":
            return refuse("a recording is shown: there is no live feed to resume", 409)
        model.resume()
        return ok()

    async def command_body(request: Request, shape: str) -> dict[str, Any] | Response:
        """The JSON object a command sends, or the answer refusing it."""
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return refuse(f"send {shape} as application/json", 415)
        try:
            body: Any = json.loads(await read_small_body(request, MAX_COMMAND_BODY_BYTES))
        except BodyTooLarge:
            return too_large(f"a command is at most {MAX_COMMAND_BODY_BYTES} bytes")
        except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested too deep
            return refuse(f"send {shape}")
        return body if isinstance(body, dict) else refuse(f"send {shape}")

    async def command_url(request: Request) -> str | Response:
        body = await command_body(request, '{"url": "ws://HOST:PORT/introspect"}')
        if isinstance(body, Response):
            return body
        try:
            return normalize_url(str(body.get("url", "")))
        except BadRequest as exc:
            return refuse(str(exc))

    async def connect(request: Request) -> Response:
        url = await command_url(request)
        if isinstance(url, Response):
            return url
        model.connect(url)
        return ok()

    def nodes_answer() -> JSONAnswer:
        return JSONAnswer({"ok": True, "nodes": model.nodes_json()})

    async def nodes(request: Request) -> Response:
        if model.nodes is None:
            return refuse("this dashboard keeps no Nodes view", 404)
        return JSONAnswer(model.nodes_json())

    async def nodes_add(request: Request) -> Response:
        if model.nodes is None:
            return refuse("this dashboard keeps no Nodes view", 404)
        url = await command_url(request)
        if isinstance(url, Response):
            return url
        try:
            model.nodes.add(url)
        except FleetFull as exc:
            return refuse(str(exc), 409)
        return nodes_answer()

    async def node_command(request: Request, verb: str) -> Response:
        if model.nodes is None:
            return refuse("this dashboard keeps no Nodes view", 404)
        body = await command_body(request, '{"id": "n1"}')
        if isinstance(body, Response):
            return body
        node = model.nodes.by_id(str(body.get("id", "")))
        if node is None:
            return refuse("no such node (it may have gone from the list)", 404)
        if verb == "remove":
            model.nodes.remove(node.id)
            return nodes_answer()
        model.connect(node.url)
        return ok()

    async def nodes_remove(request: Request) -> Response:
        return await node_command(request, "remove")

    async def nodes_focus(request: Request) -> Response:
        return await node_command(request, "focus")

    async def recording(request: Request) -> Response:
        name = unquote(request.headers.get("x-file-name", "uploaded.mock"))[:200]
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes:
            return too_large(f"the file is larger than the {max_upload_bytes}-byte limit")
        if uploads.busy:  # no await since the check: the gate holds however many race
            uploads.refused += 1
            busy = "another recording is being uploaded; try again when it is shown"
            # Read the body and let it go (within the limit and the deadline), so that a
            # client that sends it before reading the answer gets this answer, not EPIPE.
            if await discard_body(request, max_upload_bytes, upload_timeout_s):
                return refuse(busy, 409)
            return close_with(busy, 409)
        uploads.busy = True
        try:
            try:
                spool = await spool_body(request, max_upload_bytes, upload_timeout_s)
            except BodyTooLarge:
                return too_large(f"the file is larger than the {max_upload_bytes}-byte limit")
            except UploadTimedOut as exc:
                log.warning("an upload sent %d bytes in %g s and did not finish: refused",
                            exc.received, upload_timeout_s)  # fmt: skip
                return close_with(str(exc), 408)
            try:
                store, info = await anyio.to_thread.run_sync(
                    lambda: load_recording(
                        spool,  # type: ignore[arg-type]
                        name=name,
                        max_snapshots=model.store.max_snapshots,
                        max_events=model.store.max_events,
                        max_bytes=model.store.max_bytes,
                        max_event_bytes=model.store.max_event_bytes,
                        closed_ttl_ms=model.converter.closed_ttl_ms,
                        limits=model.limits,
                        max_snapshot_bytes=model.converter.max_snapshot_bytes,
                    )
                )
            except RecordingLoadError as exc:
                return refuse(str(exc), 422)
            finally:
                spool.close()
        finally:
            uploads.busy = False
        log.info("showing uploaded recording %s (%d snapshots)", info.name, info.states)
        model.show_recording(store, info)
        return ok()

    refusing = False  # pages are being refused (logged once at WARNING until one is admitted)

    async def feed(websocket: WebSocket) -> None:
        nonlocal refusing
        try:
            mailbox = model.hub.open()  # before any await: the bound holds however many race
        except TooManyPages as exc:
            # A refused page retries every second: one WARNING, then DEBUG.
            log.log(logging.DEBUG if refusing else logging.WARNING,
                    "refused a dashboard page: %s", exc)  # fmt: skip
            refusing = True
            await websocket.send_denial_response(
                PlainTextResponse(f"{exc}; close one and reload\n", 503)
            )
            return
        refusing = False
        try:
            await websocket.accept()
            async with anyio.create_task_group() as group:

                async def writer() -> None:
                    while True:
                        text = await mailbox.take(model.hello)
                        with trio.fail_after(BROWSER_SEND_TIMEOUT_S):
                            await websocket.send_text(text)

                group.start_soon(writer)
                while True:  # notices the page leaving, and its asking for a hello
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    text = message.get("text")
                    if text == "resync":
                        mailbox.resync()
                    elif text == "streams":  # it shows no page of streams now
                        mailbox.streams = None
                    elif isinstance(text, str) and text.startswith("streams?"):
                        asked = text[len("streams?") :]
                        try:
                            mailbox.streams = (asked, StreamQuery.from_feed(asked))
                        except BadQuery as exc:  # none sent until it asks a good one
                            mailbox.streams = None
                            log.debug("a page's feed query refused: %s", exc)
                group.cancel_scope.cancel()
        except (WebSocketDisconnect, trio.TooSlowError, OSError):
            pass
        except BaseExceptionGroup as group:  # the page went away while the writer sent
            _, rest = group.split((WebSocketDisconnect, trio.TooSlowError, OSError))
            if rest is not None:
                raise rest from group
        finally:
            model.hub.close(mailbox)

    async def not_an_endpoint(websocket: WebSocket) -> None:
        # A protocol client (watch, record, observer-toolkit) pointed at this port.
        server = websocket.scope.get("server") or (bind_host, 0)
        here = defaults.page_url(str(server[0]), int(server[1]))
        feed = model.feed.display_url if model.feed else defaults.default_url()
        text = (
            f"this is the libp2p-introspection dashboard ({here}), not an introspection "
            f"endpoint; the endpoint it follows is {feed}\n"
        )
        log.info("answered a WebSocket to %s: this is the dashboard, not an endpoint",
                 websocket.url.path)  # fmt: skip
        await websocket.send_denial_response(PlainTextResponse(text, 404, headers=_TEXT_HEADERS))

    routes = [
        Route("/", index),
        Route("/api/status", status),
        Route("/api/snapshot", snapshot),
        Route("/api/streams", streams),
        Route("/api/connection-series", connection_series),
        Route("/api/events", events),
        Route("/api/pause", pause, methods=["POST"]),
        Route("/api/resume", resume, methods=["POST"]),
        Route("/api/connect", connect, methods=["POST"]),
        Route("/api/recording", recording, methods=["POST"]),
        Route("/api/recording/save", save_endpoint(lambda: model.store)),  # see .save
        Route("/api/nodes", nodes),
        Route("/api/nodes/add", nodes_add, methods=["POST"]),
        Route("/api/nodes/remove", nodes_remove, methods=["POST"]),
        Route("/api/nodes/focus", nodes_focus, methods=["POST"]),
        WebSocketRoute("/feed", feed),
        WebSocketRoute("/{path:path}", not_an_endpoint),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(QuietDisconnects),
            Middleware(SecurityHeaders),
            Middleware(LocalOnly, bind_host=bind_host),
        ],
    )
    app.state.uploads = uploads
    return app
