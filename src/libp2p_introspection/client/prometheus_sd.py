"""Prometheus file-based service discovery (``file_sd_configs``) of the metrics
endpoints found in the registry (PROTOCOL.md §6): ``nodes --prometheus-sd FILE``.

The file is a JSON array of target groups, one per server with a metrics
endpoint::

    [{"targets": ["127.0.0.1:8847"],
      "labels": {"peer_id": "12D3Koo...", "implementation": "py-libp2p",
                 "token_required": "false"}}]

with ``__metrics_path__`` when the endpoint's path is not ``/metrics`` and
``__scheme__`` when it is not ``http``. Entries without a metrics endpoint are
left out. A token is never written (entries do not hold one): a target with
``token_required="true"`` needs the scrape job's ``authorization`` setting.

Every string here comes from registry files, which are other processes' data:
they only ever become JSON string values, and a ``metrics_url`` that is not an
``http(s)://host:port/...`` URL is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from urllib.parse import urlsplit

from libp2p_introspection.protocol.discovery import ServerEntry

#: The mode of the written file: Prometheus often runs as another user (Debian's
#: ``prometheus``), and the file holds no secret (addresses, peer ids).
FILE_MODE = 0o644


def target_group(entry: ServerEntry) -> dict[str, object] | None:
    """The ``file_sd`` target group of ``entry``'s metrics endpoint:
    ``{"targets": ["HOST:PORT"], "labels": {...}}``, or ``None`` when it has none
    (or its ``metrics_url`` is not an ``http(s)://HOST:PORT/PATH`` URL)."""
    if not entry.metrics_url:
        return None
    try:
        parts = urlsplit(entry.metrics_url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    labels: dict[str, str] = {
        "peer_id": entry.peer_id,
        "implementation": entry.implementation,
        "token_required": "true" if entry.token_required else "false",
    }
    path = parts.path or "/metrics"
    if path != "/metrics":
        labels["__metrics_path__"] = path
    if parts.scheme != "http":
        labels["__scheme__"] = parts.scheme
    return {"targets": [f"{host}:{port}"], "labels": labels}


def render(entries: Iterable[ServerEntry]) -> bytes:
    """The SD file's content for ``entries``: a JSON array of target groups, sorted by
    target so that the same set of servers always gives the same bytes (UTF-8, one
    trailing newline)."""
    groups = [group for group in map(target_group, entries) if group is not None]
    groups.sort(key=lambda group: json.dumps(group, sort_keys=True))
    return (json.dumps(groups, indent=2, sort_keys=True) + "\n").encode()


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once: written to a temporary file in the same
    directory, flushed to disk, then renamed over ``path``, so that a reader (Prometheus
    watches the file) sees the old content or the new, never a part. Mode
    :data:`FILE_MODE`. Raises ``OSError`` (the old file is then left as it was)."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), FILE_MODE)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
