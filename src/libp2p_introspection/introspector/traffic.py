"""Measured byte and packet counters, and bandwidth over a snapshot window.

Counting happens in wrappers installed on individual objects (see
:func:`install_counters`): after each successful ``read()`` the wrapper adds
the number of bytes returned, after each successful ``write(data)`` it adds
``len(data)``. One call is one **packet**. A read that returns no bytes (EOF)
is not a packet. The hot path is two integer additions on the counter. Where
the C accelerator is built (``_snapcode.c``), a :class:`TrafficCounter` keeps
its counts inline in C as 64-bit integers (the snapshot encoder reads them
without a Python int per value); a count beyond 2**63 - 1 bytes is refused
(``OverflowError``, which the wrappers swallow: the node's call is never
affected). Without it (or with ``LIBP2P_INTROSPECTION_PURE_PYTHON=1``) the
counts are Python ints in ``__slots__``, and counting refuses a count beyond
2**63 - 1 alike (the same snapshots either way).

A py-libp2p ``RawConnection`` whose class still has the ``read``/``write`` bodies
the introspector was checked against (:data:`touchpoints.RAW_READ`'s ``body``) is
not wrapped: its ``read``/``write`` are replaced by the same bodies with the count
added (:func:`inline_raw_counters`), so counting adds no coroutine frame to the
connection's every read and write. Any other class (another py-libp2p version, a
subclass, a security session counted for want of a raw connection) is wrapped.

Which objects are wrapped decides what is measured; the introspector uses:

* connections: the raw transport connection under the security layer
  (py-libp2p ``RawConnection``: exactly the bytes that cross the TCP socket,
  including multistream-select, Noise handshake, Noise framing and MACs,
  yamux/mplex framing and every stream's payload);
* streams: the ``NetStream`` itself, counting application payload only once
  the stream's protocol has been negotiated (multistream-select excluded).

A counter may carry an ``observer``: a stream's reader hands it every
counted chunk as well (the DHT tracker reads Kademlia requests that way, for
the one handler call that serves them). Only streams pay for the check.

Cumulative values (``cum_bytes``/``cum_packets``) only ever grow.
``inst_bw`` is ``floor((cum_bytes_now - cum_bytes_at_previous_snapshot) *
1000 / window_ms)``, in bytes per second, where the window is the snapshot's
``start_ts..instant_ts``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from libp2p_introspection.introspector import _accel
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.protocol import pb

logger = logging.getLogger(__name__)


#: The largest count (the C counter's int64); counting past it is refused in both builds.
_COUNT_MAX = 2**63 - 1


class _CounterFields:
    """The counter's fields in Python (the fallback of ``_snapcode.Counter``)."""

    __slots__ = (
        "in_bytes",
        "in_packets",
        "observer",
        "out_bytes",
        "out_packets",
        "prev_in_bytes",
        "prev_out_bytes",
    )

    def __init__(self) -> None:
        self.observer: Callable[[bytes], None] | None = None
        self.in_bytes = 0
        self.in_packets = 0
        self.out_bytes = 0
        self.out_packets = 0
        self.prev_in_bytes = 0
        self.prev_out_bytes = 0

    def took(self, data: bytes) -> bool:
        """A read returned ``data``: a non-empty chunk is one inbound packet of its
        length. Whether it was counted. As the C counter's: a count that would pass
        2**63 - 1 is refused (``OverflowError``) and nothing changes."""
        size = len(data)
        if not size:
            return False
        in_bytes = self.in_bytes + size
        if in_bytes > _COUNT_MAX or self.in_packets >= _COUNT_MAX:
            raise OverflowError("a count must fit in 64 bits (signed)")
        self.in_bytes = in_bytes
        self.in_packets += 1
        return True

    def gave(self, data: bytes) -> None:
        """A write of ``data`` completed: one outbound packet of its length (refused
        as :meth:`took`'s)."""
        out_bytes = self.out_bytes + len(data)
        if out_bytes > _COUNT_MAX or self.out_packets >= _COUNT_MAX:
            raise OverflowError("a count must fit in 64 bits (signed)")
        self.out_bytes = out_bytes
        self.out_packets += 1


#: Where the C accelerator is built, the fields live in C, inline (``_snapcode.Counter``:
#: 64-bit counts the snapshot encoder reads without a Python int per value; a value
#: that does not fit is refused with ``OverflowError``); otherwise in Python.
_CounterBase: Any = _accel.snapcode.Counter if _accel.snapcode is not None else _CounterFields


class TrafficCounter(_CounterBase):  # type: ignore[misc]
    """Cumulative bytes and packets in both directions for one object.

    ``in_*`` count data received (read), ``out_*`` data sent (written). The
    ``prev_*`` fields hold the byte counts seen at the previous snapshot and
    are only touched by :meth:`to_pb` (and the snapshot encoder). ``observer``,
    when set, is called with each chunk a negotiated stream's ``read()``
    returned, after it is counted (its exceptions are swallowed). A new counter
    holds 0 everywhere and no observer.
    """

    __slots__ = ()

    def add(self, other: TrafficCounter) -> None:
        """Add ``other``'s cumulative counts to this counter."""
        self.in_bytes += other.in_bytes
        self.in_packets += other.in_packets
        self.out_bytes += other.out_bytes
        self.out_packets += other.out_packets

    def to_pb(self, out: pb.Traffic, window_ms: int) -> None:
        """Fill ``out`` (both gauges always present) and advance the bandwidth baseline.

        :param window_ms: length of the snapshot window, ms. When it is 0 the
            bandwidth is reported as 0 and the baseline is kept, so the bytes
            are attributed to the next non-empty window.
        """
        fill_gauge(out.traffic_in, self.in_bytes, self.in_packets, self.prev_in_bytes, window_ms)
        fill_gauge(
            out.traffic_out, self.out_bytes, self.out_packets, self.prev_out_bytes, window_ms
        )
        if window_ms > 0:
            self.prev_in_bytes = self.in_bytes
            self.prev_out_bytes = self.out_bytes

    def to_dict(self, window_ms: int) -> dict[str, dict[str, int]]:
        """:meth:`to_pb` in keyword form: a ``Traffic`` as nested dicts, for
        ``add(traffic=...)`` (both gauges present), advancing the baseline alike.

        Building a message from keywords runs in C: much cheaper than setting
        each field from Python, for the thousands of streams of a snapshot.
        """
        in_bytes, out_bytes = self.in_bytes, self.out_bytes
        traffic = {
            "traffic_in": {
                "cum_bytes": in_bytes,
                "cum_packets": self.in_packets,
                "inst_bw": bandwidth(in_bytes - self.prev_in_bytes, window_ms),
            },
            "traffic_out": {
                "cum_bytes": out_bytes,
                "cum_packets": self.out_packets,
                "inst_bw": bandwidth(out_bytes - self.prev_out_bytes, window_ms),
            },
        }
        if window_ms > 0:
            self.prev_in_bytes = in_bytes
            self.prev_out_bytes = out_bytes
        return traffic


def bandwidth(delta_bytes: int, window_ms: int) -> int:
    """Bytes per second for ``delta_bytes`` over ``window_ms`` ms (floor; 0 for an empty window)."""
    if window_ms <= 0 or delta_bytes <= 0:
        return 0
    return delta_bytes * 1000 // window_ms


def fill_gauge(
    gauge: pb.DataGauge, cum_bytes: int, cum_packets: int, prev_bytes: int, window_ms: int
) -> None:
    """Set a ``DataGauge``; it is marked present even when every value is 0."""
    gauge.SetInParent()
    gauge.cum_bytes = cum_bytes
    gauge.cum_packets = cum_packets
    gauge.inst_bw = bandwidth(cum_bytes - prev_bytes, window_ms)


def _default_of(method: Callable[..., Any], param: str, fallback: Any) -> Any:
    try:
        parameter = inspect.signature(method).parameters.get(param)
    except (TypeError, ValueError):
        return fallback
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return fallback
    return parameter.default


def counting_reader(
    original: Callable[..., Awaitable[bytes]],
    counter: TrafficCounter,
    negotiated: Any = None,
    touch: Callable[[Any], None] | None = None,
    key: Any = None,
) -> Callable[..., Awaitable[bytes]]:
    """Wrap a bound ``read(n)`` so every non-empty result is counted as one inbound packet.

    :param negotiated: optional object with a ``protocol_id`` attribute (a
        ``NetStream``); when given, bytes are counted only once its
        ``protocol_id`` is set, i.e. after multistream-select negotiation.
    :param touch: with ``negotiated``: called with ``key`` after each counted call (the
        registry's ``touched.add`` and the stream's connection record: which
        connections the next snapshot must look into).
    """
    default_n = _default_of(original, "n", None)
    protocol = tp.STREAM_PROTOCOL.name  # NetStream.protocol_id, read on every call
    took = counter.took  # one call (in C where built) per read

    if negotiated is None:

        async def read(n: Any = default_n) -> bytes:
            data = await original(n)
            try:  # noqa: SIM105 (the hot path: try is free, a context manager is not)
                took(data)
            except Exception:  # never let counting break the node
                pass
            return data

    else:
        mark = touch if touch is not None else _ignore
        # py-libp2p sets a stream's protocol once (set_protocol) and never unsets it:
        # once seen, it is not read again on every call.
        negotiated_yet = False

        async def read(n: Any = default_n) -> bytes:
            nonlocal negotiated_yet
            data = await original(n)
            try:
                if not negotiated_yet:
                    if getattr(negotiated, protocol) is None:
                        return data
                    negotiated_yet = True
                if took(data):
                    mark(key)
                    observer = counter.observer
                    if observer is not None:
                        observer(data)
            except Exception:
                pass
            return data

    return read


def counting_writer(
    original: Callable[[bytes], Awaitable[None]],
    counter: TrafficCounter,
    negotiated: Any = None,
    touch: Callable[[Any], None] | None = None,
    key: Any = None,
) -> Callable[[bytes], Awaitable[None]]:
    """Wrap a bound ``write(data)``; each completed call is one outbound packet of ``len(data)``.

    :param negotiated: as for :func:`counting_reader`.
    :param touch: as for :func:`counting_reader`.
    """
    protocol = tp.STREAM_PROTOCOL.name
    gave = counter.gave
    if negotiated is None:

        async def write(data: bytes) -> None:
            await original(data)
            try:  # noqa: SIM105 (as in counting_reader)
                gave(data)
            except Exception:
                pass

    else:
        mark = touch if touch is not None else _ignore
        negotiated_yet = False  # as in counting_reader: read until seen, then not again

        async def write(data: bytes) -> None:
            nonlocal negotiated_yet
            await original(data)
            try:
                if not negotiated_yet:
                    if getattr(negotiated, protocol) is None:
                        return
                    negotiated_yet = True
                gave(data)
                mark(key)
            except Exception:
                pass

    return write


def inline_raw_counters(
    obj: Any, counter: TrafficCounter
) -> tuple[Callable[..., Awaitable[bytes]], Callable[[bytes], Awaitable[None]]] | None:
    """``read``/``write`` for a py-libp2p ``RawConnection`` that do its own methods'
    work (one call to ``obj.stream``'s, IOException and ConnectionResetError raised as
    RawConnError, ConnectionClosedError passed through) and count as the wrappers of
    :func:`counting_reader`/:func:`counting_writer` do (after a call that returned,
    never on an exception), in one coroutine frame instead of two.

    None (wrap instead) unless both methods of ``obj``'s class are the bodies
    :data:`touchpoints.RAW_READ`/:data:`touchpoints.RAW_WRITE` were checked against
    and neither is replaced on ``obj``.
    """
    if not (tp.RAW_READ.runs_checked_body(obj) and tp.RAW_WRITE.runs_checked_body(obj)):
        return None
    default_n = _default_of(tp.RAW_READ.get(obj), "n", None)
    stream = tp.RAW_STREAM.name  # RawConnection.stream, read on every call as its methods do
    closed, failures, raw_error = tp.RAW_ERRORS
    took, gave = counter.took, counter.gave

    async def read(n: Any = default_n) -> bytes:
        try:
            data = await getattr(obj, stream).read(n)
        except closed:
            raise
        except failures as error:
            raise raw_error from error
        try:  # noqa: SIM105 (as in counting_reader)
            took(data)
        except Exception:  # never let counting break the node
            pass
        return data

    async def write(data: bytes) -> None:
        try:
            await getattr(obj, stream).write(data)
        except closed:
            raise
        except failures as error:
            raise raw_error from error
        try:  # noqa: SIM105 (as in counting_reader)
            gave(data)
        except Exception:
            pass

    return read, write


def _ignore(key: Any) -> None:
    """The ``touch`` of a stream nobody tracks."""


def install_counters(
    patcher: InstancePatcher,
    obj: Any,
    counter: TrafficCounter,
    negotiated: Any = None,
    touch: Callable[[Any], None] | None = None,
    key: Any = None,
) -> bool:
    """Replace ``obj.read``/``obj.write`` with counting wrappers (instance level), or
    for a py-libp2p ``RawConnection`` with its own bodies counting inline
    (:func:`inline_raw_counters`).

    ``obj`` is a transport connection (``RawConnection``, or the security
    session when none is reachable), or a ``NetStream`` given as
    ``negotiated`` too (then ``touch(key)`` runs after each counted call, see
    :func:`counting_reader`). Returns False (and changes nothing) when ``obj`` is
    already wrapped by ``patcher`` or has no ``read``/``write``.
    """
    reader, writer = (
        (tp.RAW_READ, tp.RAW_WRITE) if negotiated is None else (tp.STREAM_READ, tp.STREAM_WRITE)
    )
    if patcher.is_patched(obj, reader.name):
        return False
    if not callable(reader.get(obj)) or not callable(writer.get(obj)):
        return False
    inline = inline_raw_counters(obj, counter) if negotiated is None else None
    if inline is not None:
        read, write = inline
        reader.hook(patcher, obj, lambda _read: read)
        writer.hook(patcher, obj, lambda _write: write)
        return True
    reader.hook(patcher, obj, lambda read: counting_reader(read, counter, negotiated, touch, key))
    writer.hook(patcher, obj, lambda write: counting_writer(write, counter, negotiated, touch, key))
    return True
