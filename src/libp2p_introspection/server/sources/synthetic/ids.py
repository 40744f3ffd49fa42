"""Ids and addresses of the simulated node: base58 peer ids, element ids, public-looking IPs."""

from __future__ import annotations

import random

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
#: Identity multihash (0x00, length 36) of a protobuf PublicKey {Type: Ed25519, Data: 32 bytes}.
_ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
#: First octets of public-looking IPv4 remote addresses (big cloud and ISP ranges).
_PUBLIC_OCTETS = (3, 13, 18, 34, 35, 44, 52, 54, 64, 78, 88, 95, 104, 128, 139, 141, 144, 147,
                  149, 157, 159, 161, 165, 167, 178, 185, 188, 193, 195, 203, 212, 217)  # fmt: skip


def base58_encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (as used for libp2p peer ids)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def peer_id_from_key(key: bytes) -> str:
    """The base58 peer id of a 32-byte Ed25519 public key (52 characters, ``12D3KooW...``).

    :raises ValueError: if ``key`` is not 32 bytes.
    """
    if len(key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(key)}")
    return base58_encode(_ED25519_PEER_ID_PREFIX + key)


def random_peer_id(rng: random.Random) -> str:
    """A new peer id from 32 bytes of ``rng``."""
    return peer_id_from_key(rng.randbytes(32))


class IdCounter:
    """Connection and stream ids: one counter shared by both, 8 bytes big-endian, from 1,
    never reused (the real introspector's scheme)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 1

    def new(self) -> bytes:
        """The next id."""
        value = self._next
        self._next += 1
        return value.to_bytes(8, "big")


def remote_ip(rng: random.Random) -> tuple[str, str]:
    """(``ip4``|``ip6``, address) of a public-looking remote host (IPv6 one time in ten)."""
    if rng.random() < 0.1:
        groups = ":".join(f"{rng.randrange(1, 0x10000):x}" for _ in range(3))
        return "ip6", f"2a01:4f8:{groups}::{rng.randrange(1, 0x10000):x}"
    first = _PUBLIC_OCTETS[rng.randrange(len(_PUBLIC_OCTETS))]
    return "ip4", f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
