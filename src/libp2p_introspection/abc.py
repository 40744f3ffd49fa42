"""Interfaces between data sources and the introspection server.

A *source* is whatever produces introspection data: a live py-libp2p host
(:class:`libp2p_introspection.introspector.HostIntrospector`), the demo
network, a recording being replayed, a synthetic node. The server asks a
source for its :class:`Runtime` once, asks it for a :class:`State` snapshot on
every tick of the server-wide snapshot clock, and receives the source's events
through a sink it registers once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

import trio

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.events import EventSink

__all__ = ["EventSink", "IntrospectionSource", "SourceOutlet"]



class SourceOutlet(Protocol):
    """What a source's background task may publish into the server (the hub)."""

    def publish_event(self, event: pb.Event) -> None:
        """Offer one event to every subscribed session; never blocks."""

    def publish_state(self, state: pb.State) -> object:
        """Make ``state`` the next snapshot of the server-wide sequence."""

    def publish_snapshot_frame(self, frame: bytes) -> object:
        """Make an already framed ``ServerMessage{state}`` the next snapshot (sent as is)."""


class IntrospectionSource(ABC):
    """Something the introspection server can serve.

    Implementations must not block the trio event loop for long: ``state()``
    runs on the loop, once per base snapshot interval.
    """

    @abstractmethod
    def runtime(self) -> pb.Runtime:
        """The node's static metadata, with every event type it may emit."""

    @abstractmethod
    def state(self) -> pb.State:
        """Build one snapshot of the node now.

        ``instant_ts`` is now (ms since epoch); ``start_ts`` is the previous
        call's ``instant_ts`` (or the source's start for the first call), and
        instantaneous values (``inst_bw``, bytes per second) cover that window.
        """

    def encoded_state(self) -> bytes:
        """One snapshot, serialized: the bytes of the ``State`` that :meth:`state` returns.

        The server calls this, not :meth:`state`, once per tick. The default
        serializes :meth:`state`; a source that keeps its messages between
        snapshots overrides it to assemble the bytes without building (and
        copying into) a fresh ``State``. Both must describe the same snapshot
        and advance the source alike.
        """
        return self.state().SerializeToString()

    #: True when the source releases snapshots on its own clock (a replay): the
    #: server then takes none itself, and :meth:`run` must publish the first
    #: snapshot before it reports started.
    clocks_snapshots: ClassVar[bool] = False

    #: The interval the source's snapshots come at, ms, when the source itself
    #: sets it (a replay: from the recording's gaps, PROTOCOL.md §4.10); the
    #: server then uses it as its base interval instead of its ``interval_ms``.
    #: ``None``: the server's ``interval_ms`` (``--interval-ms``) stands.
    base_interval_ms: int | None = None

    async def run(
        self, outlet: SourceOutlet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The source's background work, run in the server's nursery until it stops.

        The default has none. A synthetic node emits events here; a replay
        releases snapshots and events on its clock.
        """
        task_status.started()

    def set_event_sink(self, sink: EventSink | None) -> None:  # noqa: B027
        """Register the function to call for each event (``None`` detaches).

        Sources without events keep the default, which ignores the sink.
        """
