"""Interfaces between data sources and the introspection server.

A *source* is whatever produces introspection data: a live py-libp2p host
(:class:`libp2p_introspection.introspector.HostIntrospector`), the demo
network, a recording being replayed, a synthetic node. The server asks a
source for its :class:`Runtime` once, then runs the source's :meth:`run` with a
:class:`SourceOutlet`, and that is the one way data comes in: every snapshot
through :meth:`SourceOutlet.publish_snapshot`, every event through
:meth:`SourceOutlet.publish_event`.

Two shapes of source fit that one interface without flags:

- a :class:`SampledSource` (a live node, a synthetic node) builds a snapshot
  when asked; its :meth:`SampledSource.run` is the server-wide snapshot clock
  (PROTOCOL.md §4.1) that asks it every base interval and frames the bytes;
- a source with a clock of its own (a replay) overrides :meth:`IntrospectionSource.run`
  and publishes frames when it likes (PROTOCOL.md §4.10).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import trio

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.events import EventSink
from libp2p_introspection.protocol.framing import (
    FrameTooLargeError,
    encode_state_frame,
    fnv1a32,
    frame_with_checksum,
    state_message,
)

__all__ = ["BuildStats", "EventSink", "IntrospectionSource", "SampledSource", "SourceOutlet"]

log = logging.getLogger(__name__)


class SourceOutlet(Protocol):
    """Where a source hands over its data: the server's hub
    (:class:`libp2p_introspection.server.hub.Hub`).

    Both methods are synchronous, never block and never raise for a client's
    sake: a source calls them from its own tasks (a node's callbacks included).
    """

    @property
    def interval_ms(self) -> int:
        """The server's base snapshot interval, ms (§4.1; a replay's own, §4.10)."""
        ...

    def publish_snapshot(self, frame: bytes) -> None:
        """Make ``frame``, a framed ``ServerMessage{state}`` (PROTOCOL.md §2), the next
        snapshot of the server-wide sequence; its bytes go to every client as they are.

        A sampled source's bytes are framed by :meth:`SampledSource.take_snapshot`
        (:func:`~libp2p_introspection.protocol.framing.encode_state_frame`); a replay
        passes the file's record, byte-identical (§4.10).
        """

    def publish_event(self, event: pb.Event, frame: bytes | None = None) -> None:
        """Offer one event to every subscribed session.

        ``frame``: the event already framed as ``ServerMessage{event}`` (a replay: the
        file's bytes), sent as is to every client; ``None``: the hub encodes
        ``event`` once, with and without its property types (§3 ``Event.type``).
        """

    def publish_runtime(self, runtime: pb.Runtime) -> None:
        """Make ``runtime`` the ``Runtime`` every session is sent from now on (on connect,
        §4.2, and on ``REQUEST RUNTIME``, §4.3): a source whose event types grew (an
        application declared one). Sessions already told the old one are told a new
        type's property types with its first event (§3 ``Event.type``).
        """


@dataclass(frozen=True, slots=True)
class BuildStats:
    """What building a source's snapshots cost so far (the metrics'
    ``libp2p_introspection_snapshot_build_seconds`` and ``..._snapshot_errors_total``).

    ``builds``: snapshots built; ``seconds``: the time building them took, seconds
    (``time.perf_counter``); ``errors``: snapshots that failed to build.
    """

    builds: int = 0
    seconds: float = 0.0
    errors: int = 0


class IntrospectionSource(ABC):
    """Something the introspection server can serve.

    Implementations must not block the trio event loop for long.
    """

    #: The interval the source's snapshots come at, ms, when the source itself
    #: sets it (a replay: from the recording's gaps, PROTOCOL.md §4.10); the
    #: server then uses it as its base interval instead of its ``interval_ms``.
    #: ``None``: the server's ``interval_ms`` (``--interval-ms``) stands.
    base_interval_ms: int | None = None

    @abstractmethod
    def runtime(self) -> pb.Runtime:
        """The node's static metadata, with every event type it may emit."""

    @property
    def build_stats(self) -> BuildStats:
        """What building this source's snapshots cost so far (the server's health and
        metrics read it). The default, all zeros, is for a source that builds none (a
        replay publishes the file's bytes); a :class:`SampledSource` counts its own."""
        return BuildStats()

    @abstractmethod
    async def run(
        self, outlet: SourceOutlet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hand snapshots and events to ``outlet`` until cancelled; run in the server's nursery.

        Publishes the first snapshot *before* ``task_status.started()``: from then
        on there is always a latest snapshot (§4.1, §4.2).
        """


class SampledSource(IntrospectionSource):
    """A source the server-wide snapshot clock samples: it builds a snapshot when asked
    and reports events through a sink as they happen (a live node, a synthetic node)."""

    #: Snapshots that failed to build (the source raised): each is logged, and the
    #: previous snapshot stays the latest.
    snapshot_errors: int = 0
    #: Snapshots built, and the time building them took, seconds (the metrics'
    #: ``libp2p_introspection_snapshot_build_seconds``).
    snapshot_builds: int = 0
    snapshot_build_seconds: float = 0.0
    #: The outlet while :meth:`run` runs (where :meth:`runtime_changed` goes).
    _live_outlet: SourceOutlet | None = None

    @property
    def build_stats(self) -> BuildStats:
        """The snapshots :meth:`take_snapshot` built, their cost and its failures."""
        return BuildStats(self.snapshot_builds, self.snapshot_build_seconds, self.snapshot_errors)

    @abstractmethod
    def state(self) -> pb.State:
        """Build one snapshot of the node now.

        ``instant_ts`` is now (ms since epoch); ``start_ts`` is the previous
        call's ``instant_ts`` (or the source's start for the first call), and
        instantaneous values (``inst_bw``, bytes per second) cover that window.
        """

    def encoded_state(self) -> bytes:
        """One snapshot, serialized: the bytes of the ``State`` that :meth:`state` returns.

        The clock calls this, not :meth:`state`, once per tick. The default
        serializes :meth:`state`; a source that keeps its messages between
        snapshots overrides it to assemble the bytes without building (and
        copying into) a fresh ``State``. Both must describe the same snapshot
        and advance the source alike.
        """
        return self.state().SerializeToString()

    async def encoded_state_async(self) -> bytes:
        """:meth:`encoded_state` for the snapshot clock on the trio loop: a source whose
        snapshots take long to build (thousands of connections) overrides it to build in
        slices and yield between them (``await trio.sleep(0)``), so that the node's
        other tasks never wait long. The default builds at once."""
        return self.encoded_state()

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Register the function to call for each event (``None`` detaches).

        :meth:`run` registers :meth:`SourceOutlet.publish_event` for its duration.
        Sources without events keep the default, which ignores the sink.
        """

    def runtime_changed(self) -> None:
        """Tell the server that :meth:`runtime` changed (new event types), if it runs
        this source: sessions opened from now on get the new ``Runtime``. Does
        nothing otherwise (a server started later asks :meth:`runtime` itself)."""
        outlet = self._live_outlet
        if outlet is not None:
            outlet.publish_runtime(self.runtime())

    def take_snapshot(self, outlet: SourceOutlet) -> bool:
        """Build one snapshot now and publish it to ``outlet``, framed; ``False`` if the
        source failed to build it.

        A fault of the source does not reach the caller (nor stop the clock): it is
        logged and counted in :attr:`snapshot_errors`, and the previous snapshot stays
        the latest. So is a snapshot above the message limit (PROTOCOL.md §2: 64 MiB),
        which is not sent (:meth:`snapshot_too_large`).
        """
        started = time.perf_counter()
        try:
            state = self.encoded_state()
        except Exception:
            self.snapshot_errors += 1
            log.exception("the source failed to build a snapshot")
            return False
        self.snapshot_builds += 1
        self.snapshot_build_seconds += time.perf_counter() - started
        try:
            frame = encode_state_frame(state)
        except FrameTooLargeError as exc:
            return self.snapshot_too_large(exc)
        outlet.publish_snapshot(frame)
        return True

    def snapshot_too_large(self, exc: FrameTooLargeError) -> bool:
        """A snapshot built but too large to frame: logged, counted in
        :attr:`snapshot_errors`, not sent (the previous one stays the latest). Returns
        False, what :meth:`take_snapshot` then returns."""
        self.snapshot_errors += 1
        log.error("a snapshot was not sent: %s", exc)
        return False

    async def take_snapshot_async(self, outlet: SourceOutlet) -> bool:
        """:meth:`take_snapshot` as the snapshot clock runs it on the trio loop: the build
        (:meth:`encoded_state_async`, sliced if the source slices it), the copy into a
        ``ServerMessage``, its FNV-1a and the framing each run on their own, with the
        node's other tasks let in between, so that no stretch of it is longer than the
        longest of them (the FNV-1a of a 5 MB frame: about 5 ms). The same bytes as
        :meth:`take_snapshot`; faults are handled alike.

        :attr:`snapshot_build_seconds` counts the build's wall time, the slices and what
        ran between them.
        """
        started = time.perf_counter()
        try:
            state = await self.encoded_state_async()
        except Exception:
            self.snapshot_errors += 1
            log.exception("the source failed to build a snapshot")
            return False
        self.snapshot_builds += 1
        self.snapshot_build_seconds += time.perf_counter() - started
        await trio.sleep(0)
        try:
            message = state_message(state)
            del state
            await trio.sleep(0)
            checksum = fnv1a32(message)
            await trio.sleep(0)
            frame = frame_with_checksum(message, checksum)
        except FrameTooLargeError as exc:
            return self.snapshot_too_large(exc)
        outlet.publish_snapshot(frame)
        return True

    async def run(
        self, outlet: SourceOutlet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The server-wide snapshot clock (§4.1) over this source, until cancelled.

        Registers ``outlet.publish_event`` as the event sink (detached on the way
        out), takes a snapshot at once (an empty ``State`` if the source fails to
        build it, so that there is always a latest one), reports started, then takes one every
        ``outlet.interval_ms``; a tick that falls behind (a long GC, a slow
        source) is skipped, never made up in a burst.
        """
        self.set_event_sink(outlet.publish_event)
        self._live_outlet = outlet
        try:
            if not await self.take_snapshot_async(outlet):
                outlet.publish_snapshot(encode_state_frame(b""))  # an empty State: §4.1
            task_status.started()
            interval = outlet.interval_ms / 1000
            deadline = trio.current_time()
            while True:
                deadline += interval
                now = trio.current_time()
                if deadline < now:
                    deadline = now + interval
                await trio.sleep_until(deadline)
                await self.take_snapshot_async(outlet)
        finally:
            self._live_outlet = None
            self.set_event_sink(None)
