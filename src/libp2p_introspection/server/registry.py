"""A server's side of discovery (PROTOCOL.md §6): its entry in the per-user registry,
and binding the first free port of a default range.

The registry directory is created 0700 when missing; one that exists but is not
the user's own with mode 0700 (another user may have created it first), or is a
symbolic link, is refused: the server logs why at WARNING and serves without an
entry. An entry is written under a temporary name, mode 0600, then renamed into
place, so that a reader never sees half a file; it is removed when the server
stops (a crash leaves it behind: readers delete entries whose process is gone).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from typing import TypeVar

from libp2p_introspection.protocol.discovery import (
    PortPlan,
    ServerEntry,
    directory_refusal,
    entry_file_name,
    registry_dir,
)
from libp2p_introspection.server.errors import ServerError

log = logging.getLogger(__name__)

T = TypeVar("T")


class RegistryRefused(ServerError, OSError):
    """The registry directory is not trusted; the message says why and what to do."""


def default_registry_dir() -> str:
    """This user's registry directory (``$XDG_RUNTIME_DIR/libp2p-introspection``, else
    ``<temp dir>/libp2p-introspection-<uid>``)."""
    return registry_dir(os.environ, tempfile.gettempdir(), os.getuid())


def checked_registry_dir(path: str | None = None, *, create: bool) -> str | None:
    """The registry directory ``path`` (default: :func:`default_registry_dir`) once it
    is trusted; created 0700 if missing and ``create`` (else ``None`` when missing).

    Raises :class:`RegistryRefused` for a directory that is not the user's own with
    mode 0700, or is a symbolic link (nothing in it is used), and ``OSError`` if it
    cannot be created.
    """
    path = path or default_registry_dir()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return None
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # another server made it meanwhile: judge it below
            pass
        else:
            os.chmod(path, 0o700)  # whatever the umask left
        st = os.lstat(path)
    reason = directory_refusal(path, st, os.getuid())
    if reason is not None:
        raise RegistryRefused(f"not using the introspection registry: {reason}")
    return path


class Registration:
    """The registry entry of one running server; :meth:`remove` when it stops.

    ``entry`` is written as ``<pid>-<port>.json`` in ``directory`` (default: the
    user's registry). Raises :class:`RegistryRefused` or ``OSError`` if it cannot be.
    """

    def __init__(self, entry: ServerEntry, port: int, directory: str | None = None) -> None:
        assert entry.pid is not None, "a registered entry is this process's"
        folder = checked_registry_dir(directory, create=True)
        assert folder is not None
        self.entry = entry
        self.path = os.path.join(folder, entry_file_name(entry.pid, port))
        hidden = f".{entry_file_name(entry.pid, port)}.{secrets.token_hex(4)}"
        temporary = os.path.join(folder, hidden)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(temporary, flags, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(entry.to_json())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        log.debug("registered %s in %s", entry.url, self.path)

    def remove(self) -> None:
        """Delete the entry (nothing if it is already gone)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def register(entry: ServerEntry, port: int, directory: str | None = None) -> Registration | None:
    """:class:`Registration` of ``entry``, or ``None`` (logged at WARNING, with the
    reason) if the registry is refused or cannot be written: a server runs without
    an entry rather than not at all."""
    try:
        return Registration(entry, port, directory)
    except OSError as exc:
        log.warning("%s (clients will not find %s without its URL)", exc, entry.url)
        return None


async def bind_first_free(
    plan: PortPlan, host: str, bind: Callable[[int], Awaitable[T]]
) -> tuple[T, int]:
    """``await bind(port)`` for the first port of ``plan`` that is free on ``host``
    (§6), and that port. A fallback (the first port was taken) is logged at INFO.

    Raises the ``OSError`` of ``bind`` when it is not "address in use", and an
    ``OSError`` (``EADDRINUSE``) naming the range when every port is taken.
    """
    candidates = plan.candidates()
    for port in candidates:
        try:
            result = await bind(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        if port != candidates[0]:
            log.info(
                "%s takes port %d: port %d is in use (another server, perhaps)",
                plan.what, port, candidates[0],
            )  # fmt: skip
        return result, port
    raise OSError(
        errno.EADDRINUSE,
        f"every default port of {plan.what} is in use on {host} ({plan.describe()}); "
        "give a port",
    )
