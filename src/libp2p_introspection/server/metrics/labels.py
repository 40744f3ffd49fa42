"""Label values for the Prometheus export: go-libp2p's vocabulary, and caps on series.

Every label value comes from a snapshot or an event, so from the node, a replayed
file or a peer: it is data. It is never trusted for a size: a value is cut to
:data:`MAX_LABEL_CHARS` characters, and each label keeps at most
:data:`MAX_VALUES` distinct values (the rest are counted under ``"other"``), so a
hostile recording or a chatty peer cannot make the exposition, or a Prometheus
scraping it, grow without bound.
"""

from __future__ import annotations

#: Longest label value kept, characters (longer ones are cut and end in "…").
MAX_LABEL_CHARS = 120
#: Distinct values one label keeps; further values are exported as :data:`OTHER`.
MAX_VALUES = 256
#: The label value standing for every value past the cap.
OTHER = "other"

#: go-libp2p's transports, innermost last (``metricshelper.GetTransport``): the label is
#: the last of these a multiaddr holds.
_TRANSPORTS = ("p2p-circuit", "webrtc", "webrtc-direct", "webtransport", "quic", "quic-v1",
               "wss", "ws", "tcp")  # fmt: skip


def clip(value: str) -> str:
    """``value`` cut to :data:`MAX_LABEL_CHARS` characters."""
    if len(value) <= MAX_LABEL_CHARS:
        return value
    return value[: MAX_LABEL_CHARS - 1] + "…"


class CappedLabel:
    """One label's values, at most ``cap`` distinct ones; later values become :data:`OTHER`."""

    def __init__(self, cap: int = MAX_VALUES) -> None:
        self.cap = cap
        self._seen: set[str] = set()
        #: Values turned into :data:`OTHER` because the cap was reached (a count).
        self.overflowed = 0

    def __call__(self, value: str) -> str:
        value = clip(value)
        if value in self._seen:
            return value
        if len(self._seen) >= self.cap:
            self.overflowed += 1
            return OTHER
        self._seen.add(value)
        return value


def ip_version(multiaddr: str) -> str:
    """``"ip4"``/``"ip6"`` from the first IP or DNS component of ``multiaddr`` (a string
    such as ``/ip4/127.0.0.1/tcp/4001``), else ``"unknown"``: go's ``GetIPVersion``."""
    parts = multiaddr.split("/")
    for name in parts[1:2]:
        if name in ("ip4", "dns4"):
            return "ip4"
        if name in ("ip6", "dns6"):
            return "ip6"
    return "unknown"


def transport_of(transport_id: str, multiaddr: str) -> str:
    """The ``transport`` label: ``Connection.transport_id`` as text (ours is ``tcp``),
    refined by the multiaddr as go does (``/tcp/…/ws`` is ``ws``); ``"unknown"`` when
    neither says (go's value for a transport that does not set one)."""
    parts = [p for p in multiaddr.split("/") if p]
    found = [p for p in parts if p in _TRANSPORTS]
    if found:
        return found[-1]
    return transport_id or "unknown"


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
#: libp2p's ``KeyType`` enum (crypto.proto), by value: go's ``key_type`` label values.
_KEY_TYPES = {0: "RSA", 1: "Ed25519", 2: "Secp256k1", 3: "ECDSA"}


def _b58decode(text: str) -> bytes | None:
    if not text or len(text) > 128:
        return None
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            return None
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def key_type(peer_id: str) -> str:
    """The ``key_type`` label of a base58 peer id: the key type its identity multihash
    inlines (``Ed25519``, ``Secp256k1``, ... as go names them); ``"unknown"`` when the id
    is a hash of its key (RSA and ECDSA keys are too long to inline, and the id does not
    say which) or is not a peer id at all."""
    raw = _b58decode(peer_id)
    # identity multihash: 0x00, length, then the protobuf PublicKey {1: KeyType, 2: Data}
    if raw is None or len(raw) < 5 or raw[0] != 0x00 or raw[1] != len(raw) - 2:
        return "unknown"
    if raw[2] != 0x08:  # field 1, varint
        return "unknown"
    return _KEY_TYPES.get(raw[3], "unknown")
