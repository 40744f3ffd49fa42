"""What every command does around its work: logging, running under trio, and errors
that say what to do (a busy port, a server that is not there, a refused connection).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, ConnectionTimeout, HandshakeError

from libp2p_introspection import config as defaults
from libp2p_introspection.client.connection import ProtocolError
from libp2p_introspection.protocol.admission import is_loopback

#: Loggers whose INFO lines show without -v: what a command is doing, when all is well
#: (WARNING and above mean something is wrong).
STATUS_LOGGERS = (
    "libp2p_introspection.cli", "libp2p_introspection.record",
    "libp2p_introspection.server.registry",
)  # fmt: skip


def self_command() -> str:
    """How to run this CLI again from another terminal: the command name if it is on
    PATH, else the path of the one running (e.g. a virtualenv's ``.venv/bin/...``)."""
    name = "libp2p-introspect"
    if shutil.which(name):
        return name
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) == name:
        return os.path.relpath(script) if script.startswith(os.getcwd()) else script
    return f"{sys.executable} -m libp2p_introspection"


def connection_error(error: BaseException) -> str | None:
    """A one-line reason if ``error`` (or every leaf of an exception group) is a failure
    to reach or talk to a server, else ``None``."""
    if isinstance(error, BaseExceptionGroup):
        reasons = [connection_error(inner) for inner in error.exceptions]
        return reasons[0] if reasons and all(reasons) else None
    if isinstance(error, ConnectionRejected):
        body = " ".join((error.body or b"")[:1000].decode("utf-8", "replace").split())
        said = f": {body}" if body else ""
        return f"the server refused the connection (HTTP {error.status_code}){said}"
    if isinstance(error, ConnectionTimeout):
        return "the server did not complete the WebSocket handshake in time"
    if isinstance(error, HandshakeError | OSError | ProtocolError):
        cause = error.__cause__ or error.__context__
        if not str(error) and cause is not None:  # trio-websocket wraps a refused TCP connect
            return connection_error(cause) or str(cause)
        return str(error) or type(error).__name__
    if isinstance(error, ConnectionClosed):
        reason = error.reason
        return f"the server closed the connection ({reason.code} {reason.reason or ''})".strip()
    return None


def _cause_of(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in ``error``, its causes and contexts, or the leaves of a group."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup):
            found = [_cause_of(inner, kind) for inner in error.exceptions]
            return next((f for f in found if f is not None), None)
        if isinstance(error, kind):
            return error
        error = error.__cause__ or error.__context__
    return None


def refused(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was caused by, a refused TCP connection (nothing listens)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup):
            return any(refused(inner) for inner in error.exceptions)
        if isinstance(error, ConnectionRefusedError):
            return True
        error = error.__cause__ or error.__context__
    return False


def unreachable(url: str, error: BaseException) -> str:
    """The reason a client could not reach ``url``; when nothing listens there, with
    how to start a server at that address."""
    from urllib.parse import urlsplit

    reason = connection_error(error) or str(error)
    parts = urlsplit(url)
    try:
        host, port = parts.hostname or defaults.DEFAULT_HOST, parts.port or defaults.DEFAULT_PORT
    except ValueError:  # a port out of range: say what the error said
        return reason
    unresolved = _cause_of(error, socket.gaierror)
    if unresolved is not None:
        why = getattr(unresolved, "strerror", None) or str(unresolved)
        return f"cannot resolve host {host} ({why}); check the name, or give an IP address"
    if not refused(error):
        return reason
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    text = f"nothing is listening on {where} (connection refused)"
    if not is_loopback(host) and host != "localhost":
        return f"{text}; is the introspection server running there?"
    me = self_command()
    moved = "" if port == defaults.DEFAULT_PORT else f" --port {port}"
    demo, replay = f"{me} demo{moved}", f"{me} serve --source FILE.mock{moved}"
    width = max(len(demo), len(replay))
    return (
        f"{text}.\nStart a server there first, in another terminal:\n"
        f"  {demo.ljust(width)}   # a demo network of py-libp2p nodes\n"
        f"  {replay.ljust(width)}   # a recording, replayed"
    )


def bind_failure(error: OSError, what: str, host: str, port: int | None,
                 hint: str) -> str | None:  # fmt: skip
    """The one-line error for ``error`` raised binding ``what`` on ``host:port`` (``port``
    ``None``: the first free default port), naming the option that moves it (``hint``);
    ``None`` if ``error`` is not about the address."""
    where = host if port is None else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if error.errno == errno.EADDRINUSE and port is None:
        return f"cannot serve {what}: {error.strerror}; {hint}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot serve {what} on {where}: port {port} is already in use (another "
            f"libp2p-introspect, perhaps); {hint}"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve {what} on {where}: {host} is not an address of this machine; " \
               "choose another with --host"  # fmt: skip
    return None


@contextmanager
def binding(what: str, host: str, port: int | None, hint: str) -> Iterator[None]:
    """A failure to bind ``host:port`` in the block becomes a one-line error naming the
    port and the option that changes it (``hint``), also from inside a nursery."""
    try:
        yield
    except (OSError, BaseExceptionGroup) as exc:
        found = exc.subgroup(OSError) if isinstance(exc, BaseExceptionGroup) else exc
        message = bind_failure(first_leaf(found), what, host, port, hint) if found else None
        if message is None:
            raise
        raise click.ClickException(message) from None


def port_hint(option: str, extra: str = "") -> str:
    """How to move a busy port: the flag ``option`` (and ``extra`` words)."""
    return f"choose another with {option} N ({option} 0 picks a free one){extra}"


def setup_logging(verbose: int, secrets: tuple[str, ...] = ()) -> None:
    """Log to stderr at WARNING (INFO, DEBUG with -v, -vv), and the status lines of
    :data:`STATUS_LOGGERS` at INFO; no line shows a token (the ``secrets`` given, or
    one in a URL or header)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redactor = defaults.RedactTokens(secrets)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, defaults.RedactTokens)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
    if verbose < 2:
        logging.getLogger("libp2p").setLevel(max(level, logging.WARNING))
    logging.getLogger("libp2p_introspection").setLevel(level)
    for name in STATUS_LOGGERS:
        logging.getLogger(name).setLevel(min(level, logging.INFO))


def run(async_fn: Callable[[], Any]) -> None:
    """Run under trio; Ctrl-C (SIGINT) or SIGTERM ends cleanly, a bind failure is a
    clear error.

    The signal cancels ``async_fn`` (see :func:`stop_on_signal`) rather than letting
    trio raise ``KeyboardInterrupt`` wherever the code happens to be: an interrupt
    landing between a socket write and its bookkeeping would make the close path
    write part of a frame again, and the client would read a corrupt stream where
    it should read the server's 1001. A second signal while shutting down is trio's
    ``KeyboardInterrupt`` again (the way out of a stuck shutdown).
    """

    async def until_signal() -> bool:
        async with trio.open_nursery() as nursery:
            stopper = _Stopper(nursery.cancel_scope)
            nursery.start_soon(stopper.wait)
            await async_fn()
            nursery.cancel_scope.cancel()
        return stopper.signalled

    try:
        if trio.run(until_signal):
            click.echo("stopped", err=True)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    except OSError as exc:
        raise click.ClickException(f"cannot serve: {exc}") from exc
    except BaseExceptionGroup as group:  # errors from inside nurseries arrive grouped
        if group.subgroup(KeyboardInterrupt) is not None:
            click.echo("stopped", err=True)
            return
        clear = group.subgroup(click.ClickException)  # already one clear line
        if clear is not None:
            raise first_leaf(clear) from None
        errors = group.subgroup(OSError)
        if errors is None:
            raise
        raise click.ClickException(f"cannot serve: {first_leaf(errors)}") from group


def first_leaf(error: BaseException) -> BaseException:
    """The first exception in ``error``, an exception group or not."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class _Stopper:
    """Cancels ``scope`` on the first SIGINT or SIGTERM and remembers that it did."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.signalled = False

    async def wait(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.signalled = True
                self.scope.cancel()
                return


async def stop_on_signal(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` on the first SIGINT or SIGTERM."""
    await _Stopper(scope).wait()
