"""Discovery of introspection servers (PROTOCOL.md §6), the pure part: what a
registry entry and an mDNS announcement hold, where the registry is, which
directories and files are trusted, and which ports a server tries.

No I/O here: ``libp2p_introspection.server.registry`` writes entries (and
``server.announce`` announces them), ``libp2p_introspection.client.discovery``
reads and browses them; both judge what they find with the rules below.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from libp2p_introspection.config import DEFAULT_DASHBOARD_PORT, DEFAULT_METRICS_PORT, DEFAULT_PORT
from libp2p_introspection.protocol.errors import DataError

#: The registry directory's name under ``$XDG_RUNTIME_DIR``.
REGISTRY_NAME = "libp2p-introspection"
#: The largest registry file a reader reads, bytes (an entry is a few hundred).
MAX_ENTRY_SIZE = 16 * 1024
#: The DNS-SD service type servers announce with ``--announce`` (15 characters, §6).
SERVICE_TYPE = "_p2p-introspect._tcp.local."
#: The keys of the announcement's TXT record.
TXT_KEYS = ("path", "peer_id", "impl", "started_ms", "token", "metrics")


class EntryError(DataError):
    """A registry file or an announcement that is not an entry; the message says why."""


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One introspection server found by discovery.

    ``url``: where clients connect (``ws://HOST:PORT/introspect``); ``peer_id``
    and ``implementation``: the node's (from its ``Runtime``); ``pid``: the
    server's process id (``None`` for a server announced over mDNS, which may
    run on another machine); ``started_ms``: when it started, ms since epoch;
    ``token_required``: whether it asks clients for a token (never the token);
    ``metrics_url``: its Prometheus endpoint, or ``None``. ``origin`` says where it
    was found (``"registry"`` or ``"lan"``) and is not part of the file.
    """

    url: str
    peer_id: str
    implementation: str
    pid: int | None
    started_ms: int
    token_required: bool
    metrics_url: str | None = None
    origin: str = "registry"

    def to_json(self) -> bytes:
        """The registry file's content: one JSON object, UTF-8."""
        fields = asdict(self)
        del fields["origin"]
        return (json.dumps(fields, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> ServerEntry:
        """The entry a registry file holds. Raises :class:`EntryError` for anything else
        (not JSON, a missing key, a value of the wrong type, a URL that is not
        ``ws://``/``wss://``)."""
        if len(data) > MAX_ENTRY_SIZE:
            raise EntryError(f"larger than {MAX_ENTRY_SIZE} bytes")
        try:
            fields = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise EntryError(f"not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise EntryError("not a JSON object")
        kinds: dict[str, tuple[type, ...]] = {
            "url": (str,), "peer_id": (str,), "implementation": (str,), "pid": (int,),
            "started_ms": (int,), "token_required": (bool,), "metrics_url": (str, type(None)),
        }  # fmt: skip
        for key, allowed in kinds.items():
            value = fields.get(key, ...)
            if value is ...:
                raise EntryError(f"no {key!r}")
            wrong = not isinstance(value, allowed) or (
                bool not in allowed and isinstance(value, bool)
            )
            if wrong:
                raise EntryError(f"{key!r} is not a {allowed[0].__name__}")
        if not fields["url"].startswith(("ws://", "wss://")):
            raise EntryError("'url' is not a ws:// URL")
        if fields["pid"] <= 0 or fields["started_ms"] < 0:
            raise EntryError("'pid' or 'started_ms' out of range")
        return cls(**{key: fields[key] for key in kinds})

    def age_s(self, now_ms: int | None = None) -> float:
        """Seconds since the server started (0 if its clock is ahead of ours)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0, now_ms - self.started_ms) / 1000


def entry_file_name(pid: int, port: int) -> str:
    """The registry file of the server of process ``pid`` on ``port``."""
    return f"{pid}-{port}.json"


def is_entry_file_name(name: str) -> bool:
    """Whether ``name`` is a registry file (not a temporary one being written)."""
    return name.endswith(".json") and not name.startswith(".")


def registry_dir(environ: Mapping[str, str], temp_dir: str, uid: int) -> str:
    """The per-user registry directory: ``$XDG_RUNTIME_DIR/libp2p-introspection``
    when that variable names an absolute path, else
    ``<temp_dir>/libp2p-introspection-<uid>``."""
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, REGISTRY_NAME)
    return os.path.join(temp_dir, f"{REGISTRY_NAME}-{uid}")


def directory_refusal(path: str, st: os.stat_result, uid: int) -> str | None:
    """Why the registry directory ``path`` (its ``lstat``) is not trusted, or ``None``:
    it must be a real directory (not a symbolic link), owned by ``uid``, mode 0700."""
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link, not a directory of its own"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != uid:
        return (
            f"{path} belongs to user id {st.st_uid}, not to you ({uid}): another user may "
            "have created it to plant entries; remove it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o700:
        return (
            f"{path} has mode {mode:04o}, not 0700: others could plant entries in it; "
            f"remove it or run chmod 700 {path}"
        )
    return None


def file_refusal(path: str, st: os.stat_result, uid: int) -> str | None:
    """Why the registry file ``path`` (its ``lstat``) is not trusted, or ``None``:
    a regular file owned by ``uid``, mode 0600."""
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != uid:
        return f"{path} belongs to user id {st.st_uid}, not to you ({uid})"
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        return f"{path} has mode {mode:04o}, not 0600"
    return None


# ------------------------------------------------------------------ mDNS


def txt_properties(entry: ServerEntry, path: str) -> dict[str, str]:
    """The TXT record announcing ``entry`` (§6): ``path`` (the WebSocket path),
    ``peer_id``, ``impl``, ``started_ms``, ``token`` (``required`` or ``none``) and
    ``metrics`` (the metrics endpoint's port, or empty)."""
    metrics = ""
    if entry.metrics_url:
        from urllib.parse import urlsplit

        port = urlsplit(entry.metrics_url).port
        metrics = "" if port is None else str(port)
    return {
        "path": path,
        "peer_id": entry.peer_id,
        "impl": entry.implementation,
        "started_ms": str(entry.started_ms),
        "token": "required" if entry.token_required else "none",
        "metrics": metrics,
    }


def instance_name(entry: ServerEntry, port: int) -> str:
    """The DNS-SD instance name of a server: its implementation, the end of its peer
    id and its port, within the 63 bytes of a DNS label."""
    return f"{entry.implementation} {entry.peer_id[-12:]} {port}"[:63]


def entry_from_service(
    properties: Mapping[bytes, bytes | None], addresses: list[str], port: int
) -> ServerEntry:
    """The entry of an mDNS announcement: its TXT ``properties`` (raw, as received),
    the ``addresses`` it resolved to (text IP addresses; the first is used) and its
    ``port``. Raises :class:`EntryError` when a key is missing or malformed."""

    def text(key: str) -> str:
        value = properties.get(key.encode())
        if value is None:
            raise EntryError(f"no TXT key {key!r}")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise EntryError(f"TXT key {key!r} is not UTF-8") from None

    if not addresses:
        raise EntryError("no address")
    if not 0 < port < 65536:
        raise EntryError(f"port {port} out of range")
    path = text("path")
    if not path.startswith("/"):
        raise EntryError("TXT 'path' does not start with /")
    started = text("started_ms")
    if not started.isdigit():
        raise EntryError("TXT 'started_ms' is not a number")
    token = text("token")
    if token not in ("required", "none"):
        raise EntryError("TXT 'token' is neither 'required' nor 'none'")
    metrics = properties.get(b"metrics") or b""
    address = addresses[0]
    host = f"[{address}]" if ":" in address else address
    metrics_url = None
    if metrics.isdigit() and 0 < int(metrics) < 65536:
        metrics_url = f"http://{host}:{int(metrics)}/metrics"
    return ServerEntry(
        url=f"ws://{host}:{port}{path}",
        peer_id=text("peer_id"),
        implementation=text("impl"),
        pid=None,
        started_ms=int(started),
        token_required=token == "required",
        metrics_url=metrics_url,
        origin="lan",
    )


# ------------------------------------------------------------------ ports


@dataclass(frozen=True, slots=True)
class PortPlan:
    """The ports a kind of server tries when it is given none: ``first``, then each of
    ``fallback_first``..``fallback_last`` in order (§6), but those in ``skip``."""

    what: str
    first: int
    fallback_first: int
    fallback_last: int
    skip: frozenset[int] = frozenset()

    def candidates(self) -> list[int]:
        """Every port to try, in order."""
        ports = [self.first, *range(self.fallback_first, self.fallback_last + 1)]
        return [port for port in ports if port not in self.skip]

    def describe(self) -> str:
        """``8845, then 8850-8869``."""
        return f"{self.first}, then {self.fallback_first}-{self.fallback_last}"


#: Introspection servers (§6): 8845, then 8850-8869.
INTROSPECTION_PORTS = PortPlan("the introspection endpoint", DEFAULT_PORT, 8850, 8869)
#: Dashboards: 8846, then 8870-8889.
DASHBOARD_PORTS = PortPlan("the dashboard", DEFAULT_DASHBOARD_PORT, 8870, 8889)
#: Metrics endpoints opened without an explicit port (the demo's): 8847, then 8890-8909.
METRICS_PORTS = PortPlan("the metrics endpoint", DEFAULT_METRICS_PORT, 8890, 8909)
