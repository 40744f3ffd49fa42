"""Attaching must leave a connection's objects on CPython's fast attribute path.

CPython 3.11 keeps an object's attributes inline until something asks for its
``__dict__``; from then on every attribute read on that object takes the generic
path. On a bulk transfer that was most of what introspection cost the node (1.6%
of its instructions for ``vars()`` on one connection's objects, cachegrind), so a
user relies on the introspector never asking: these tests read CPython 3.11's
object layout directly (the managed dict and inline values pointers before the
object's GC header) and are skipped on any other interpreter.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from typing import Any

import pytest
import trio
from introspector_harness import connect, running_hosts, wait_until

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.patching import instance_attribute

_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT
_WORD = ctypes.sizeof(ctypes.c_void_p)

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or platform.python_implementation() != "CPython",
    reason="reads CPython 3.11's object layout",
)


def _inline(obj: object) -> bool:
    """Whether ``obj``'s attributes are still inline (no ``__dict__`` materialised)."""
    assert type(obj).__flags__ & _MANAGED_DICT, type(obj)
    dict_pointer = ctypes.c_void_p.from_address(id(obj) - 3 * _WORD).value
    values_pointer = ctypes.c_void_p.from_address(id(obj) - 4 * _WORD).value
    return bool(values_pointer) and not dict_pointer


def test_the_layout_probe_sees_vars_materialise_a_dict() -> None:
    class Plain:
        def __init__(self) -> None:
            self.a = 1

    obj = Plain()
    assert _inline(obj)
    vars(obj)
    assert not _inline(obj)


def test_instance_attribute_reads_without_materialising() -> None:
    class Conn:
        def __init__(self) -> None:
            self.peer = "p"

        def read(self) -> str:
            return "class"

    obj, shadowed = Conn(), Conn()
    replacement = lambda: "instance"  # noqa: E731
    shadowed.read = replacement  # type: ignore[method-assign]
    assert instance_attribute(obj, "read", "none") == "none"
    assert instance_attribute(obj, "peer") == "p"
    assert instance_attribute(obj, "absent", "none") == "none"
    assert instance_attribute(shadowed, "read") is replacement
    assert _inline(obj) and _inline(shadowed)


async def test_attaching_and_a_transfer_leave_the_connection_objects_inline() -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (h1, h2):
            intro = HostIntrospector(h1)
            try:
                await connect(h1, h2)
                received: list[bytes] = []

                async def handler(stream: Any) -> None:
                    received.append(await stream.read(5))
                    await stream.close()

                h2.set_stream_handler("/test/inline/1", handler)
                stream = await h1.new_stream(h2.get_id(), ["/test/inline/1"])
                await stream.write(b"hello")
                await wait_until(lambda: received == [b"hello"])
                intro.state()  # a snapshot walks every connection and stream
                intro.encoded_state()
                conn = h1.get_network().get_connections()[0]
                secured = conn.muxed_conn.secured_conn
                raw = secured.conn.conn
                objects = {
                    "SwarmConn": conn,
                    "Yamux": conn.muxed_conn,
                    "SecureSession": secured,
                    "RawConnection": raw,
                    "TrioTCPStream": raw.stream,
                    "NetStream": stream,
                    "YamuxStream": stream.muxed_stream,
                }
                assert {name: _inline(obj) for name, obj in objects.items()} == dict.fromkeys(
                    objects, True
                )
            finally:
                intro.detach()
