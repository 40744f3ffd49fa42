"""The one reader of varint-length-prefixed stream messages (issue 11: identify and the
inbound DHT tracker each decoded the prefix by hand)."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from libp2p_introspection.protocol.framing import encode_varint
from libp2p_introspection.protocol.prefixed import (
    STARTED,
    PrefixedMessage,
    PrefixedReader,
    PrefixError,
    read_length_prefix,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "libp2p_introspection"


def _stream(bodies: list[bytes]) -> bytes:
    return b"".join(encode_varint(len(body)) + body for body in bodies)


def _read(reader: PrefixedReader, data: bytes, cuts: list[int]) -> list[object]:
    found: list[object] = []
    for begin, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        found += reader.feed(data[begin:end])
    return found


def test_every_split_of_a_stream_reads_the_same_messages():
    bodies = [b"", b"x", bytes(range(200)), b"y" * 300, b"z" * 20_000]
    data = _stream(bodies)
    expected: list[object] = []
    for body in bodies:
        expected += [STARTED, PrefixedMessage(len(body), body)]
    rng = random.Random(11)
    splits = [[], list(range(1, len(data)))]  # whole, and one byte at a time
    splits += [sorted(rng.sample(range(1, len(data)), 12)) for _ in range(50)]
    for cuts in splits:
        assert _read(PrefixedReader(1 << 20), data, cuts) == expected


def test_a_message_started_but_not_whole_is_in_progress():
    reader = PrefixedReader(1 << 20)
    assert reader.feed(encode_varint(300)[:1]) == [STARTED] and reader.in_message
    assert reader.feed(encode_varint(300)[1:] + b"a" * 299) == [] and reader.in_message
    assert reader.feed(b"a") == [PrefixedMessage(300, b"a" * 300)] and not reader.in_message


def test_only_keep_bytes_of_a_body_are_held():
    reader = PrefixedReader(1 << 20, keep=4)
    assert reader.feed(_stream([b"abcdefgh"])) == [STARTED, PrefixedMessage(8, b"abcd")]


def test_a_length_over_the_limit_stops_the_reading():
    reader = PrefixedReader(100)
    assert reader.feed(_stream([b"ok"]) + encode_varint(101) + b"x" * 101) == [
        STARTED, PrefixedMessage(2, b"ok"), STARTED,
    ]  # fmt: skip
    assert reader.refused == "declares 101 bytes"
    assert reader.feed(_stream([b"later"])) == []


def test_ten_continuing_bytes_are_no_prefix():
    reader = PrefixedReader(1 << 20)
    assert reader.feed(b"\xff" * 9) == [STARTED] and reader.refused is None
    assert reader.feed(b"\xff") == [] and reader.refused == "has no varint length prefix"


def test_read_length_prefix():
    assert read_length_prefix(encode_varint(5) + b"abcde", 10) == (5, 1)
    assert read_length_prefix(b"\x80\x80", 10) is None
    assert read_length_prefix(b"xx" + encode_varint(300), 1000, start=2) == (300, 4)
    with pytest.raises(PrefixError, match="declares 300 bytes"):
        read_length_prefix(encode_varint(300), 299)
    with pytest.raises(PrefixError, match="no varint"):
        read_length_prefix(b"\x80" * 10, 10)


@pytest.mark.parametrize("module", ["introspector/identify.py", "introspector/dht_inbound.py"])
def test_the_stream_readers_decode_no_varint_of_their_own(module):
    """Neither reader masks varint bytes (``& 0x7F``) itself: both read through
    protocol/prefixed.py."""
    source = (SRC / module).read_text(encoding="utf-8")
    tree = ast.parse(source)
    masks = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.BitAnd | ast.BitOr)
        and any(isinstance(s, ast.Constant) and s.value in (0x7F, 0x80)
                for s in (node.left, node.right))
    ]  # fmt: skip
    assert masks == [] and "protocol.prefixed import" in source
