"""Finding introspection servers (PROTOCOL.md §6), a client's side: the per-user
registry on this machine, and mDNS on the local network on request.

Everything read here is data from other processes: a registry file that does
not parse is skipped (and said so), never trusted for a size; an entry whose
process is gone is deleted; a registry directory or file that is not the
user's own with the right mode is refused, with the reason, and nothing from it
is used. Strings in entries are shown through
:func:`~libp2p_introspection.config.printable` before they reach a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from libp2p_introspection import config as defaults
from libp2p_introspection.client.errors import ClientError
from libp2p_introspection.protocol.discovery import (
    MAX_ENTRY_SIZE,
    SERVICE_TYPE,
    EntryError,
    ServerEntry,
    directory_refusal,
    entry_from_service,
    file_refusal,
    is_entry_file_name,
    registry_dir,
)

log = logging.getLogger(__name__)


@dataclass
class Found:
    """What discovery found: ``entries`` (servers, registry first, by start time), and
    ``problems``, one sentence each: a refused directory or file, a file that does not
    parse, an announcement that does not make sense; ``removed``: the registry files
    deleted because their process is gone."""

    entries: list[ServerEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (it may be another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def default_registry_dir() -> str:
    """This user's registry directory (``$XDG_RUNTIME_DIR/libp2p-introspection``, else
    ``<temp dir>/libp2p-introspection-<uid>``)."""
    return registry_dir(os.environ, tempfile.gettempdir(), os.getuid())


def read_registry(
    directory: str | None = None, *, alive: Callable[[int], bool] = pid_alive
) -> Found:
    """The servers registered in ``directory`` (default: this user's registry).

    A missing directory is no server. A directory that is not the user's own with
    mode 0700 (or is a symbolic link) gives no entry and one problem saying why; so
    does each file that is not a regular file of the user's with mode 0600, and each
    that does not parse (it stays: it may be another version's). Entries whose
    process is not ``alive`` are deleted. Never raises for what it finds.
    """
    directory = directory or default_registry_dir()
    found = Found()
    uid = os.getuid()
    try:
        reason = directory_refusal(directory, os.lstat(directory), uid)
    except FileNotFoundError:
        return found
    except OSError as exc:
        found.problems.append(f"cannot read the registry {directory}: {exc.strerror}")
        return found
    if reason is not None:
        found.problems.append(f"not using the introspection registry: {reason}")
        return found
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        found.problems.append(f"cannot read the registry {directory}: {exc.strerror}")
        return found
    for name in names:
        if not is_entry_file_name(name):
            continue
        path = os.path.join(directory, name)
        try:
            entry = _read_entry(path, uid)
        except FileNotFoundError:  # its server stopped meanwhile
            continue
        except (OSError, EntryError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            found.problems.append(f"skipped {path}: {detail}")
            continue
        assert entry.pid is not None
        if not alive(entry.pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            found.removed.append(path)
            continue
        found.entries.append(entry)
    found.entries.sort(key=lambda entry: (entry.started_ms, entry.url))
    return found


def _read_entry(path: str, uid: int) -> ServerEntry:
    """The entry in ``path``; ``OSError`` if unreadable, :class:`EntryError` if refused
    (not a regular 0600 file of ``uid``) or not an entry."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        reason = file_refusal(path, os.fstat(file.fileno()), uid)
        if reason is not None:
            raise EntryError(reason.removeprefix(f"{path} "))
        data = file.read(MAX_ENTRY_SIZE + 1)
    return ServerEntry.from_json(data)


def browse_lan(timeout_s: float = 3.0, *, interfaces: list[str] | None = None) -> Found:
    """The servers announced over mDNS within ``timeout_s`` seconds (blocking; run it in
    a thread under trio). ``interfaces``: the addresses to listen on (default: all).
    An announcement that does not parse is a problem; a failure to browse at all (no
    multicast) is one problem."""
    from zeroconf import InterfaceChoice, ServiceBrowser, ServiceListener, Zeroconf

    found = Found()
    names: list[str] = []

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            if name not in names:
                names.append(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            self.add_service(zc, type_, name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    try:
        zc = Zeroconf(interfaces=interfaces or InterfaceChoice.All)
    except OSError as exc:
        found.problems.append(f"cannot browse the local network over mDNS: {exc}")
        return found
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, Listener())
        time.sleep(timeout_s)
        browser.cancel()
        for name in list(names):
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=1000)
            shown = defaults.printable(name)
            if info is None or info.port is None:
                found.problems.append(f"mDNS service {shown} did not resolve")
                continue
            try:
                entry = entry_from_service(info.properties, info.parsed_addresses(), info.port)
            except EntryError as exc:
                found.problems.append(f"mDNS service {shown}: {exc}")
                continue
            found.entries.append(entry)
    finally:
        zc.close()
    return found


def describe(entry: ServerEntry, now_ms: int | None = None) -> str:
    """One line naming ``entry`` for a person: URL, implementation, peer id, pid, age,
    and whether it needs a token (terminal-safe)."""
    pid = f"pid {entry.pid}" if entry.pid is not None else "on the LAN"
    token = ", token required" if entry.token_required else ""
    return defaults.printable(
        f"{entry.url}  {entry.implementation} {entry.peer_id}  ({pid}, up "
        f"{format_age(entry.age_s(now_ms))}{token})"
    )


def format_age(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``, ``3d02h``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


class NoChoice(ClientError):
    """Several servers and no way to ask which: the message lists them."""


def choose(
    entries: list[ServerEntry], ask: Callable[[list[ServerEntry]], ServerEntry] | None
) -> ServerEntry | None:
    """The server a client without a URL connects to (§6): the only one, the one
    ``ask`` picks among several (``None``: not on a terminal, raise :class:`NoChoice`
    listing them), or ``None`` when there is none (the default URL then)."""
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0]
    if ask is None:
        listing = "\n".join(f"  {describe(entry)}" for entry in entries)
        raise NoChoice(f"{len(entries)} introspection servers are running; give one's URL:\n"
                       f"{listing}")  # fmt: skip
    return ask(entries)
