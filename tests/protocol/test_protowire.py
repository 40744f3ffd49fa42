"""Single fields read off the wire (protocol/protowire.py), as a parser keeps them."""

from __future__ import annotations

import pytest
from hostile_records import field, varint_field

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.protowire import WireError, last_string, last_varint, values


def test_single_fields_follow_protobufs_merge_rules():
    # Two occurrences of ServerMessage.state: protobuf merges them, the last instant wins.
    data = field(2, varint_field(3, 5)) + field(2, varint_field(3, 7) + varint_field(4, 1))
    assert last_varint(data, (2, 3)) == 7 == pb.ServerMessage.FromString(data).state.instant_ts
    assert last_varint(data, (2, 4)) == 1
    assert last_varint(data, (2, 5), default=-1) == -1
    runtime = field(3, field(1, b"go") + field(7, field(1, b"A")) + field(7, field(1, b"B")))
    assert last_string(runtime, (3, 1)) == "go"
    assert [v for _, v, _, _ in values(runtime, (3, 7))] == [3, 3]
    with pytest.raises(WireError, match="UTF-8"):
        last_string(field(3, field(1, b"\xff")), (3, 1))
