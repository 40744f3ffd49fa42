"""Who may read ``/metrics``: the introspection port's admission rules, for plain HTTP.

Pure functions over a request's method, target and headers (no I/O). The same
rules as the WebSocket endpoint (:mod:`libp2p_introspection.protocol.admission`):
the shared token when one is set (``Authorization: Bearer``, as Prometheus sends
it with its ``authorization`` setting, or ``X-Introspection-Token``, or
``?token=``), browser origins, and, while the endpoint is bound to loopback,
a loopback ``Host`` (a page whose name was rebound to 127.0.0.1 sends its own name
there, and is refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from libp2p_introspection.protocol.admission import (
    Refusal,
    header,
    is_loopback,
    origin_allowed,
    presented_token,
    token_ok,
)

#: The path the exposition is served on.
METRICS_PATH = "/metrics"


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header value (``127.0.0.1:8847`` -> ``127.0.0.1``;
    ``[::1]:8847`` -> ``::1``)."""
    value = host_header.strip()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def metrics_refusal(
    method: str,
    target: str,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    token: str | None,
    allowed_origins: Iterable[str] = (),
    loopback_only: bool = True,
) -> Refusal | None:
    """``None`` to serve the exposition, else the :class:`Refusal` to answer with.

    Order: method (405 unless GET or HEAD), path (404 unless :data:`METRICS_PATH`),
    ``Host`` (403 when ``loopback_only`` and it is missing or not loopback), origin
    (403), token (401). The reason never contains the token.
    """
    if method not in ("GET", "HEAD"):
        return Refusal(405, f"{method} is not served here; GET {METRICS_PATH}")
    path = urlsplit(target).path
    if path != METRICS_PATH:
        return Refusal(404, f"nothing is served at {path}; the metrics are at {METRICS_PATH}")
    if loopback_only:
        host = header(headers, "host")
        if host is None or not is_loopback(host_name(host)):
            return Refusal(403, "this endpoint answers requests for a loopback host only")
    origins = [v for k, v in headers if k.decode("latin-1").lower() == "origin"]
    if len(origins) > 1 or not origin_allowed(
        origins[0].decode("latin-1") if origins else None, allowed_origins
    ):
        return Refusal(403, "origin not allowed (see --allow-origin)")
    if not token_ok(token, presented_token(target, headers)):
        return Refusal(401, "missing or wrong token (Authorization: Bearer TOKEN)")
    return None
