"""The ``Runtime`` message every source sends first (PROTOCOL.md §3).

A live host's introspector and the synthetic node describe themselves the same
way: an implementation name, the installed py-libp2p version (read from the
package metadata, so py-libp2p is not imported), this machine's platform, the
node's peer id and every event type the source may emit.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.events import EventSpec


def libp2p_version() -> str:
    """The installed ``libp2p`` distribution's version (importlib.metadata), or "unknown"."""
    try:
        return importlib.metadata.version("libp2p")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def platform_description() -> str:
    """OS, machine and Python, e.g. ``"Linux-6.1-x86_64-with-glibc2.36 (CPython 3.11.9)"``."""
    return f"{platform.platform()} ({platform.python_implementation()} {platform.python_version()})"


def build_runtime(implementation: str, peer_id: str, specs: Iterable[EventSpec]) -> pb.Runtime:
    """A ``Runtime``: ``implementation`` (e.g. "py-libp2p"), :func:`libp2p_version`,
    :func:`platform_description`, ``peer_id`` (base58) and ``specs`` as its
    ``event_types``, in order."""
    return pb.Runtime(
        implementation=implementation,
        version=libp2p_version(),
        platform=platform_description(),
        peer_id=peer_id,
        event_types=[spec.to_pb() for spec in specs],
    )
