"""The HTTP side of a WebSocket connection: the upgrade request and its answer.

Sans-I/O, as :mod:`libp2p_introspection.server.wire` (which owns one
:class:`UpgradeReader` per connection): :meth:`UpgradeReader.receive_data` is
fed the bytes a client sent before the upgrade, parses them with h11 and checks
the request (RFC 6455 §4.2.1, in the order a client most likely gets wrong);
:func:`accept_response` and :func:`refusal_response` are the bytes of the 101
and of a refusal. A request is bounded in bytes (:data:`MAX_REQUEST_SIZE`)
whether it is whole or not; nothing of it is echoed back but a few bytes of
its target.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from http import HTTPStatus

import h11

from libp2p_introspection.server.errors import ServerError

#: Largest upgrade request (request line and headers) accepted, bytes.
MAX_REQUEST_SIZE = 16 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeRefused(ServerError):
    """The upgrade request is not one we can accept: answer ``status`` (HTTP) and close.

    ``reason`` names the fault in words (never echoing more than a few bytes of input).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpgradeRequested:
    """A well-formed WebSocket upgrade request arrived: accept or reject it.

    ``target`` is the request target (path and query), ``headers`` the request's
    headers with lowercased names, as sent (the admission rules read them).
    """

    target: str
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class PlainRequest:
    """A plain HTTP ``GET`` without ``Upgrade: websocket`` (a browser, ``curl``) for
    ``target`` (path and query): answer it with
    :meth:`~libp2p_introspection.server.wire.ServerWire.reject` (426 and a text
    saying what this endpoint is), then close."""

    target: str


class UpgradeReader:
    """Reads one upgrade request, up to ``max_request_size`` bytes (past it:
    :class:`HandshakeRefused` 431).

    After the request, :attr:`key` is its ``Sec-WebSocket-Key`` and
    :meth:`trailing_data` the bytes the client sent after it (frames sent before
    our 101). :attr:`client_left` tells that the client closed its side before its
    request was whole.
    """

    def __init__(self, max_request_size: int = MAX_REQUEST_SIZE) -> None:
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=max_request_size)
        self._max_request_size = max_request_size
        self._received = 0  # bytes fed
        self.request: UpgradeRequested | PlainRequest | None = None
        self.key = b""
        self.client_left = False

    def receive_data(self, data: bytes) -> UpgradeRequested | PlainRequest | None:
        """Feed bytes the client sent (``b""``: it closed its side); the request once it
        is whole (``None`` until then, or when :attr:`client_left`).

        Raises :class:`HandshakeRefused` for a request that is not a valid upgrade.
        """
        self._received += len(data)
        try:
            self._http.receive_data(data)
            while True:
                event = self._http.next_event()
                if event is h11.NEED_DATA:
                    if self._received > self._max_request_size:
                        raise HandshakeRefused(431, "request too large")
                    return None
                if isinstance(event, h11.Request):
                    self.request = self._check_request(event)
                    if isinstance(self.request, PlainRequest):  # answered, never upgraded
                        return self.request
                elif isinstance(event, h11.Data):
                    raise HandshakeRefused(400, "an upgrade request has no body")
                elif isinstance(event, h11.ConnectionClosed):
                    self.client_left = True  # before its request was whole
                    return None
                elif event is h11.PAUSED and self.request is not None:
                    # h11 bounds an incomplete request only; bound a whole one too.
                    if self._received - len(self._http.trailing_data[0]) > self._max_request_size:
                        raise HandshakeRefused(431, "request too large")
                    return self.request
                elif event is h11.PAUSED:  # pragma: no cover - h11 pauses only after a request
                    raise HandshakeRefused(400, "no request")
        except (h11.RemoteProtocolError, RuntimeError) as exc:  # RuntimeError: data after EOF
            if not isinstance(exc, h11.RemoteProtocolError):
                raise HandshakeRefused(400, "malformed HTTP request") from None
            status = exc.error_status_hint
            raise HandshakeRefused(
                status, "request too large" if status == 431 else "malformed HTTP request"
            ) from None

    def trailing_data(self) -> bytes:
        """The bytes received after the request (the client's first frames, if any)."""
        trailing, _ = self._http.trailing_data
        return bytes(trailing)

    def _check_request(self, request: h11.Request) -> UpgradeRequested | PlainRequest:
        # RFC 6455 §4.2.1, in the order a client most likely gets wrong.
        if request.method != b"GET":
            raise HandshakeRefused(405, "the WebSocket upgrade must be a GET")
        headers = tuple((bytes(name), bytes(value)) for name, value in request.headers)
        values: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            values.setdefault(name, []).append(value)
        has_body = b"content-length" in values or b"transfer-encoding" in values
        if has_body and values.get(b"content-length") != [b"0"]:
            raise HandshakeRefused(400, "an upgrade request has no body")
        # h11 accepts only ASCII request targets; decode defensively all the same.
        target = bytes(request.target).decode("ascii", "replace")
        if b"websocket" not in _tokens(values.get(b"upgrade", [])):
            return PlainRequest(target)  # someone opened the URL in a browser, say
        if request.http_version != b"1.1":
            raise HandshakeRefused(400, "the WebSocket upgrade needs HTTP/1.1")
        if b"upgrade" not in _tokens(values.get(b"connection", [])):
            raise HandshakeRefused(400, "missing 'Connection: Upgrade'")
        if values.get(b"sec-websocket-version") != [b"13"]:
            raise HandshakeRefused(426, "unsupported WebSocket version (this server speaks 13)")
        keys = values.get(b"sec-websocket-key", [])
        if len(keys) != 1 or not _valid_key(keys[0]):
            raise HandshakeRefused(400, "missing or malformed Sec-WebSocket-Key")
        self.key = keys[0].strip()
        return UpgradeRequested(target, headers)


def accept_response(key: bytes) -> bytes:
    """The 101 answering a request with Sec-WebSocket-Key ``key`` (RFC 6455 §4.2.2):
    no extension, no subprotocol."""
    digest = hashlib.sha1(key + _GUID).digest()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
    )


def refusal_response(status: int, body: str) -> bytes:
    """An HTTP refusal: ``status`` with a plain-text ``body`` (UTF-8), then
    ``Connection: close`` (and the version we speak, for a 426)."""
    payload = body.encode("utf-8", "replace")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    extra = b"Sec-WebSocket-Version: 13\r\n" if status == 426 else b""
    return (
        f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + b"X-Content-Type-Options: nosniff\r\n"
        + f"Content-Length: {len(payload)}\r\n".encode("ascii")
        + extra
        + b"Connection: close\r\n\r\n"
        + payload
    )


def _tokens(values: list[bytes]) -> set[bytes]:
    """The comma-separated tokens of header ``values``, lowercased."""
    return {token.strip().lower() for value in values for token in value.split(b",")}


def _valid_key(key: bytes) -> bool:
    """A Sec-WebSocket-Key is 16 random bytes in base64 (RFC 6455 §4.1)."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False
