"""The source a server serves, from its name: ``demo``, ``mock`` or a recording's path.

``serve --source NAME`` and ``demo`` open their source here. The demo source
(a live py-libp2p network with the observed node introspected) sits above the
server layer, in :mod:`libp2p_introspection.attach`: the caller hands its
opener in, so that this module imports no introspector.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from libp2p_introspection.abc import IntrospectionSource
from libp2p_introspection.server.config import ServerConfig
from libp2p_introspection.server.errors import SourceError

#: An opened source and a description of it for the user.
Opened = tuple[IntrospectionSource, str]
#: Opens the demo source for a config and the settings (see :func:`open_source`).
DemoOpener = Callable[[ServerConfig, Mapping[str, Any]], AbstractAsyncContextManager[Opened]]


class UnknownSource(SourceError):
    """The name is neither ``demo`` nor ``mock`` nor an existing file."""


class BadSourceOptions(SourceError):
    """The mock source's options are refused."""


class CannotReplay(SourceError):
    """The recording cannot be read (missing, unreadable, not a recording)."""


def check_source_name(name: str) -> None:
    """Raise :class:`UnknownSource` unless ``name`` is ``demo``, ``mock`` or an existing path;
    a name that looks like a file is said to be missing."""
    if name in ("demo", "mock") or os.path.exists(name):
        return
    looks_like_a_file = os.sep in name or "." in os.path.basename(name)
    raise UnknownSource(
        f"the file {name} does not exist (--source takes 'demo', 'mock' or the path "
        "of a recording file)" if looks_like_a_file else
        f"unknown source {name!r}: use 'demo', 'mock' or the path of a recording file "
        "(there is no file of that name)"
    )  # fmt: skip


def open_mock(config: ServerConfig, settings: Mapping[str, Any]) -> Opened:
    """The synthetic node of ``settings`` (a value for each of the synthetic node's
    ``SHAPE_OPTIONS``: ``connections``, ``streams``, ... ``resource_manager``; and
    ``seed``).

    ``seed`` ``None`` picks a fresh one (:func:`fresh_seed`), so two mocks started on one
    machine are two different nodes (peer ids, addresses); the description names the
    seed used, so a run can be reproduced with ``--seed N``.
    Raises :class:`BadSourceOptions`."""
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource
    from libp2p_introspection.server.sources.synthetic.options import SHAPE_OPTIONS

    try:
        options = SyntheticOptions(
            **{option.name: settings[option.name] for option in SHAPE_OPTIONS},
            seed=fresh_seed() if settings["seed"] is None else settings["seed"],
            closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
        )
    except (ValueError, TypeError) as exc:
        raise BadSourceOptions(str(exc)) from exc
    pubsub = f", gossipsub on {options.pubsub_topics} topics" if options.pubsub_topics else ""
    return (
        SyntheticSource(options),
        f"a synthetic node ({options.connections} connections x {options.streams} streams"
        f"{pubsub}; seed {options.seed})",
    )


def fresh_seed() -> int:
    """A seed for a mock given none: 32 random bits from the OS (``random.SystemRandom``)."""
    return random.SystemRandom().getrandbits(32)


def open_replay(path: str, config: ServerConfig, settings: Mapping[str, Any]) -> Opened:
    """The replay of the recording at ``path`` with ``settings``' ``speed``, ``loop`` and
    ``limits`` (a ``RecordLimits``). Raises :class:`CannotReplay`."""
    from libp2p_introspection.protocol.recording import RecordingError
    from libp2p_introspection.server.sources.replay import ReplaySource

    speed, loop = settings["speed"], settings["loop"]
    try:
        replay = ReplaySource(path, speed=speed, loop=loop, limits=settings["limits"],
                              interval_ms=config.interval_ms)  # fmt: skip
    except (RecordingError, SourceError, OSError) as exc:  # ReplayError is a SourceError
        raise CannotReplay(f"cannot replay {path}: {exc}") from exc
    runtime = replay.runtime()
    return (
        replay,
        f"recording {path} ({runtime.implementation} node {runtime.peer_id}, "
        f"{replay.shape.states} snapshots, speed x{speed:g}{', looping' if loop else ''})",
    )


@asynccontextmanager
async def open_source(
    name: str, config: ServerConfig, settings: Mapping[str, Any], open_demo: DemoOpener
) -> AsyncIterator[Opened]:
    """The source ``name`` names, with a description for the user, for the block's duration.

    ``settings`` holds each source's own options (see :func:`open_mock`,
    :func:`open_replay`, and ``open_demo``'s). Raises :class:`SourceError`.
    """
    check_source_name(name)
    if name == "demo":
        async with open_demo(config, settings) as opened:
            yield opened
    elif name == "mock":
        yield open_mock(config, settings)
    else:
        yield open_replay(name, config, settings)
