"""The counting wrappers of a stream's and a secured session's read/write, in both builds:
the C awaitable (``_snapcode.counting_call``, where the accelerator is built) and the
``async def`` fallback must behave the same to the node: every ``send``, ``throw`` (trio
cancels by throwing into the chain) and ``close`` reaches the original coroutine exactly,
a call that returns is counted once, a call that raises is never counted, and counting's
own failures never reach the node.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Generator
from typing import Any

import pytest
import trio

from libp2p_introspection.introspector import _accel, traffic


class Tick:
    """One suspension: yields ``"tick"`` to whoever drives the coroutine, then
    evaluates to what it is sent."""

    def __await__(self) -> Generator[str, Any, Any]:
        return (yield "tick")


class Stream:
    """A stand-in with a ``protocol_id`` (the negotiated check) and a read/write that
    suspend once, recording what reached them."""

    def __init__(self, protocol_id: str | None = "/echo/1") -> None:
        self.protocol_id = protocol_id
        self.events: list[Any] = []
        self.reply = b"hello"

    async def read(self, n: int | None = None) -> bytes:
        try:
            sent = await Tick()
        except ValueError as error:  # a handled throw: the call still returns
            self.events.append(("caught", str(error)))
            return b"xy"
        finally:
            self.events.append("finally")
        self.events.append(("sent", sent))
        return self.reply[: n or None]

    async def write(self, data: bytes) -> None:
        try:
            await Tick()
        finally:
            self.events.append("finally")
        self.events.append(("wrote", data))


@pytest.fixture(params=["c", "python"])
def build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs against the C awaitable (where built) and the Python wrappers."""
    if request.param == "c":
        if _accel.snapcode is None:
            pytest.skip("the C accelerator is not built (or turned off)")
        assert traffic._counting_call is not None  # built: the C awaitable is used
    else:
        monkeypatch.setattr(traffic, "_counting_call", None)
    return str(request.param)


def _wrap(stream: Stream, negotiated: bool, touched: list[Any] | None = None) -> Any:
    counter = traffic.TrafficCounter()
    mark: Callable[[Any], None] | None = touched.append if touched is not None else None
    reader = traffic.counting_reader(
        stream.read, counter, stream if negotiated else None, mark, "key"
    )
    writer = traffic.counting_writer(
        stream.write, counter, stream if negotiated else None, mark, "key"
    )
    return counter, reader, writer


def _counts(counter: Any) -> tuple[int, int, int, int]:
    return (counter.in_bytes, counter.in_packets, counter.out_bytes, counter.out_packets)


@pytest.mark.parametrize("negotiated", [False, True])
def test_send_reaches_the_original_and_the_result_is_counted_once(
    build: str, negotiated: bool
) -> None:
    stream = Stream()
    touched: list[Any] = []
    counter, reader, writer = _wrap(stream, negotiated, touched)
    it = reader(3).__await__()
    assert it.send(None) == "tick"
    with pytest.raises(StopIteration) as stop:
        it.send("value")
    assert stop.value.value == b"hel"
    assert stream.events == ["finally", ("sent", "value")]
    it = writer(b"abcd").__await__()
    assert next(it) == "tick"
    with pytest.raises(StopIteration) as stop:
        it.send(None)
    assert stop.value.value is None
    assert _counts(counter) == (3, 1, 4, 1)
    assert touched == (["key", "key"] if negotiated else [])


def test_a_stream_counts_nothing_before_its_protocol_is_set(build: str) -> None:
    stream = Stream(protocol_id=None)
    touched: list[Any] = []
    counter, reader, writer = _wrap(stream, True, touched)
    for call in (lambda: reader(), lambda: writer(data=b"ab")):
        it = call().__await__()
        next(it)
        with pytest.raises(StopIteration):
            it.send(None)
    assert _counts(counter) == (0, 0, 0, 0) and touched == []
    assert stream.events[-1] == ("wrote", b"ab")  # the keyword reached the original


def test_a_throw_the_original_handles_returns_and_is_counted(build: str) -> None:
    stream = Stream()
    counter, reader, _ = _wrap(stream, True)
    it = reader(8).__await__()
    next(it)
    with pytest.raises(StopIteration) as stop:
        it.throw(ValueError("boom"))
    assert stop.value.value == b"xy"
    assert stream.events == [("caught", "boom"), "finally"]
    assert _counts(counter) == (2, 1, 0, 0)


def test_a_throw_the_original_does_not_handle_propagates_and_counts_nothing(build: str) -> None:
    stream = Stream()
    counter, reader, writer = _wrap(stream, True)
    for call in (lambda: reader(8), lambda: writer(b"abc")):
        it = call().__await__()
        next(it)
        with pytest.raises(KeyError):
            it.throw(KeyError("gone"))
    assert stream.events == ["finally", "finally"]
    assert _counts(counter) == (0, 0, 0, 0)


def test_close_reaches_the_original_and_counts_nothing(build: str) -> None:
    stream = Stream()
    counter, reader, writer = _wrap(stream, False)
    for call in (lambda: reader(8), lambda: writer(b"abc")):
        awaitable = call()
        it = awaitable.__await__()
        next(it)
        it.close()
    assert stream.events == ["finally", "finally"]
    assert _counts(counter) == (0, 0, 0, 0)


def test_counting_failures_never_reach_the_node(build: str) -> None:
    stream = Stream()
    counter, reader, _ = _wrap(stream, True)

    def observer(data: bytes) -> None:
        raise RuntimeError("observer broke")

    counter.observer = observer
    counter.in_bytes = 2**63 - 2  # the next chunk overflows: refused, swallowed
    it = reader().__await__()
    next(it)
    with pytest.raises(StopIteration) as stop:
        it.send(None)
    assert stop.value.value == b"hello"
    assert _counts(counter) == (2**63 - 2, 0, 0, 0)


async def test_trio_cancellation_is_thrown_into_the_original(build: str) -> None:
    started = trio.Event()
    events: list[str] = []

    async def read(n: int | None = None) -> bytes:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            events.append("cancelled")
        return b"never"

    counter = traffic.TrafficCounter()
    reader = traffic.counting_reader(read, counter)
    async with trio.open_nursery() as nursery:

        async def reading() -> None:
            await reader(4)

        nursery.start_soon(reading)
        await started.wait()
        nursery.cancel_scope.cancel()
    assert events == ["cancelled"]
    assert _counts(counter) == (0, 0, 0, 0)


async def test_under_trio_the_chunks_are_counted_and_seen_by_the_observer(build: str) -> None:
    chunks = [b"ab", b"", b"cde"]
    seen: list[bytes] = []

    async def read(n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return chunks.pop(0)

    class Negotiated:
        protocol_id = "/x/1"

    counter = traffic.TrafficCounter()
    counter.observer = seen.append
    reader = traffic.counting_reader(read, counter, Negotiated())
    assert [await reader(), await reader(n=5), await reader()] == [b"ab", b"", b"cde"]
    assert seen == [b"ab", b"cde"]
    assert _counts(counter) == (5, 2, 0, 0)


def test_an_abandoned_call_in_a_cycle_is_collected(build: str) -> None:
    stream = Stream()
    _, reader, _ = _wrap(stream, False)
    for _ in range(50):
        it = reader(4).__await__()
        next(it)
        stream.cycle = it  # stream -> call -> bound read -> stream
    del it, reader
    alive = weakref.ref(stream)
    del stream
    gc.collect()
    assert alive() is None  # the cycle through the pending call was found and freed


def test_the_c_call_rejects_a_write_without_data() -> None:
    if traffic._counting_call is None:
        pytest.skip("the C accelerator is not built (or turned off)")
    stream = Stream()
    _, _, writer = _wrap(stream, False)
    with pytest.raises(TypeError):
        writer()
    assert stream.events == []
