"""A trio task run in the background of an ``async with`` block, its errors unwrapped.

:func:`background` is what :func:`~libp2p_introspection.server.server.open_introspection_server`
serves in: the block's own exception comes out as itself (one Ctrl-C is one
``KeyboardInterrupt``), not inside the exception groups a bare nursery adds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def background(
    task: Callable[..., Awaitable[object]],
) -> AsyncIterator[object]:
    """Run ``task`` (started as by ``nursery.start``) for the duration of the block,
    then cancel it; yields what it passed to ``task_status.started``.

    Unlike a bare nursery around the block, what the block raises is not wrapped:
    it comes out as itself once the task has stopped (a nursery would turn one
    Ctrl-C into a ``BaseExceptionGroup`` at every level it crosses). A task that
    fails while stopping is raised grouped with the block's error, so neither is
    lost; a group of nothing but ``KeyboardInterrupt`` (Ctrl-C that landed inside
    the task) is one ``KeyboardInterrupt``.
    """
    raised: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            started = await nursery.start(task)
            try:
                yield started
            except BaseException as exc:  # re-raised below, unwrapped
                raised = exc
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        interrupts, rest = group.split(KeyboardInterrupt)
        only_interrupts = rest is None and interrupts is not None
        if only_interrupts and (raised is None or isinstance(raised, KeyboardInterrupt)):
            raise (raised or _first(group)) from None
        if raised is not None:
            raise BaseExceptionGroup("the block and its background task failed",
                                     [raised, *group.exceptions]) from None  # fmt: skip
        raise
    if raised is not None:
        raise raised


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of ``group``."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf
