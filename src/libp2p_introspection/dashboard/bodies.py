"""Request bodies the dashboard reads, each bounded in size and time.

A command's JSON body is read up to a small limit and no further
(:func:`read_small_body`); a recording upload is read as it comes into a
spooled temporary file (:func:`spool_body`: memory up to
:data:`SPOOL_IN_MEMORY`, then an unnamed file on disk), refused as soon as it
passes its limit or its deadline; an upload refused because another is in
progress (:class:`UploadGate`) is read and dropped within the same bounds
(:func:`discard_body`). Nothing here holds more than its limit, whatever a
client sends or declares. The routes that use them, and the answers they
give, are in :mod:`.app`; their JSON answers are :class:`JSONAnswer`.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse

from libp2p_introspection import config as defaults
from libp2p_introspection.dashboard.errors import DashboardError


class JSONAnswer(JSONResponse):
    """Starlette's ``JSONResponse``, its text made as every other JSON text a page gets
    (:func:`.caps.dumps`: compact, ASCII, other characters escaped), NaN refused as
    before. Starlette's own writes UTF-8, which a lone surrogate cannot be in: a
    recording named by a file name that is not UTF-8 (``\\udcff``) made every answer
    holding the status a 500 while the feed's messages carried it escaped."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=False).encode("ascii")


#: Largest body of a JSON command (``/api/connect``), bytes.
MAX_COMMAND_BODY_BYTES = 4 * 1024
#: Recordings up to this size stay in memory while uploaded; larger ones spool to disk.
SPOOL_IN_MEMORY = 1024 * 1024
#: The whole body of an upload must arrive within this, seconds.
UPLOAD_TIMEOUT_S = 120.0


class UploadGate:
    """Lets one recording upload in at a time (see ``POST /api/recording``).

    ``busy``: an upload is being read or loaded; ``refused``: uploads refused
    so far because one was. Trio thread only.
    """

    def __init__(self) -> None:
        self.busy = False
        self.refused = 0


class BadRequest(DashboardError):
    """A command the dashboard refuses (message shown to the user)."""


class BodyTooLarge(DashboardError):
    """A request body over its route's limit (answered with 413)."""


class UploadTimedOut(DashboardError):
    """An upload whose body did not all arrive within its deadline (answered with 408).

    ``received``: bytes read before the deadline; ``timeout_s``: the deadline, seconds.
    """

    def __init__(self, received: int, timeout_s: float) -> None:
        super().__init__(
            f"the upload did not finish within {timeout_s:g} s ({received} bytes received)"
        )
        self.received = received
        self.timeout_s = timeout_s


async def read_small_body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes; never holds more than that.

    Raises :class:`BodyTooLarge` as soon as the body (or its declared
    ``Content-Length``) passes ``limit``; what the client sends after is not
    read (the connection is closed after the answer).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge()
        body += chunk
    return bytes(body)


async def spool_body(
    request: Request, limit: int, timeout_s: float
) -> tempfile.SpooledTemporaryFile[bytes]:
    """The request's whole body in a spooled temporary file (in memory up to
    :data:`SPOOL_IN_MEMORY` bytes, then on disk, unnamed), positioned at its start;
    the caller closes it.

    Raises :class:`BodyTooLarge` as soon as more than ``limit`` bytes arrived
    (the chunk that passed it is not kept), and :class:`UploadTimedOut` when the
    body is not all there within ``timeout_s`` seconds; the file is closed (and
    gone) then.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        size = 0
        with trio.move_on_after(timeout_s) as deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge()
                spool.write(chunk)
        if deadline.cancelled_caught:
            raise UploadTimedOut(size, timeout_s)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


async def discard_body(request: Request, limit: int, timeout_s: float) -> bool:
    """Read the request's body and let it go, within ``limit`` bytes and ``timeout_s``
    seconds; whether all of it was read (``False``: the rest was left unread, so the
    connection must close after the answer)."""
    with trio.move_on_after(timeout_s):
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                break
        else:
            return True
    return False


def normalize_url(text: str) -> str:
    """:func:`libp2p_introspection.config.normalize_url`, with :class:`BadRequest`
    for what it refuses (the page shows the reason)."""
    try:
        return defaults.normalize_url(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
