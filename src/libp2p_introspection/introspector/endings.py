"""How py-libp2p streams and connections end, read from py-libp2p's own state.

py-libp2p 0.8.1 does not tell its notifees about every ending. A stream reset
by the remote stays in ``SwarmConn.streams`` with ``NetStream.is_closed``
False until local code next reads, writes or closes it, although the muxer
already knows: yamux has set ``YamuxStream.reset_received`` and mplex
``MplexStream.event_reset``, and both have dropped (or will drop, once its
buffer is drained) the stream from their table. A connection that dies of a
TCP reset or a security/muxer failure is torn down exactly like one closed on
purpose. This module reads the muxers' records (what happened on the wire),
and installs a few instance-level hooks so an ending is seen when it happens,
not only at the next snapshot.

What the muxers record (py-libp2p 0.8.1), yamux (``YamuxStream`` in
``Yamux.streams``) / mplex (``MplexStream`` in ``Mplex.streams``):

* remote FIN (half-close): ``recv_closed``, and ``closed`` if we had sent FIN
  too (then the entry leaves the table once its buffer is drained) /
  ``event_remote_closed``, the entry leaves if we had closed too
  (``Mplex._handle_close``);
* local close (FIN): ``send_closed``, and ``closed`` plus leaving the table if
  the remote had sent FIN / ``event_local_closed``, leaving if the remote had
  closed;
* remote RST: ``reset_received`` and ``closed``, leaving once drained
  (``Yamux._finalize_stream_locked``) / ``event_reset`` (unless the remote had
  sent FIN first) with both sides closed, leaving (``Mplex._handle_reset``);
* local reset: the same flags as a remote RST (``YamuxStream.reset`` /
  ``MplexStream.reset``);
* connection teardown: ``event_shutting_down`` on the muxer; every stream
  ``closed`` (and ``reset_received`` when the remote side ended it) / every
  stream not remote-closed gets ``event_reset``; the tables are cleared.

A local and a remote reset leave the same flags, so local resets are told
apart by a hook on the muxed stream's ``reset()`` (:func:`hook_stream`), which
every local reset goes through (``NetStream.reset``, mplex's own resets of a
stream whose reader stalled, the swarm's teardown). A connection's transport
or security failure is seen by hooks on its secured connection's
``read``/``write`` (TCP reset, broken pipe, a frame that fails to decrypt,
EOF inside a frame); an mplex framing error by a hook on ``Mplex.read_message``.

Touchpoints: every py-libp2p attribute this relies on that is not part of a
py-libp2p interface is one entry of
:data:`~libp2p_introspection.introspector.touchpoints.TOUCHPOINTS`. When one
is missing (another py-libp2p version), a warning is logged once and the
introspector degrades: without a hook, endings are found at the next snapshot
by reading state; without a state attribute, the notifee's view is used.

Limits (py-libp2p 0.8.1 keeps no record of them): a yamux ``GO_AWAY`` with an
error code, an oversized yamux frame, and an mplex reset arriving after the
remote's FIN are not distinguishable from an orderly end.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import trio
from libp2p.io.exceptions import IncompleteReadError
from libp2p.network.stream.net_stream import NetStream, StreamState
from libp2p.stream_muxer.mplex.mplex import Mplex
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.touchpoints import Touchpoint

logger = logging.getLogger(__name__)

#: Longest error description kept for a connection's ``reason``, characters.
MAX_REASON_CHARS = 200

# Reasons (the ``reason`` of StreamClosed/ConnectionClosed events).
CLOSED = "closed"
RESET_BY_REMOTE = "reset by remote"
RESET_LOCALLY = "reset locally"
STREAM_ERROR = "stream error"
CONNECTION_CLOSED = "connection closed"
CONNECTION_ERROR = "connection error"
CLOSED_LOCALLY = "closed locally"
CLOSED_BY_REMOTE = "closed by remote"


# ------------------------------------------------------------------ state


def _is_set(event: Any) -> bool:
    try:
        return bool(event is not None and event.is_set())
    except Exception:
        return False


def wire_end(muxed: Any) -> tuple[bool, bool]:
    """``(ended, reset)`` of a muxed stream, as its muxer's flags record it.

    ``ended``: both directions are closed, or the stream was reset; ``reset``:
    a local or remote reset (see the module's list). The muxers' tables need
    not be read: a stream leaves them only once these flags say it ended (or
    with its whole connection, which the swarm reports). ``(False, False)``
    for muxers this module does not know (QUIC): the notifee decides.
    """
    if isinstance(muxed, YamuxStream):
        reset = bool(tp.YAMUX_STREAM_RESET.get(muxed, False))
        return reset or bool(tp.YAMUX_STREAM_CLOSED.get(muxed, False)), reset
    if isinstance(muxed, MplexStream):
        reset = _is_set(tp.MPLEX_STREAM_RESET.get(muxed))
        both = _is_set(tp.MPLEX_STREAM_LOCAL_CLOSED.get(muxed)) and _is_set(
            tp.MPLEX_STREAM_REMOTE_CLOSED.get(muxed)
        )
        return reset or both, reset
    return False, False


def ended_probe(muxed: Any, stream: Any) -> Callable[[], bool]:
    """A check of ``wire_end(muxed)[0] or stream_failed(stream)``, built once per
    stream so that a snapshot can run it for thousands of streams (it reads the
    flags directly: a few attribute reads). Where a touchpoint is missing, the
    general (warning, degrading) readers are used instead."""
    if isinstance(stream, NetStream) and tp.NETSTREAM_STATE.has(stream):
        state, error = tp.NETSTREAM_STATE.name, StreamState.ERROR
    else:
        return lambda: wire_end(muxed)[0] or stream_failed(stream)
    if isinstance(muxed, YamuxStream):
        if tp.YAMUX_STREAM_RESET.has(muxed) and tp.YAMUX_STREAM_CLOSED.has(muxed):
            reset_name, closed_name = tp.YAMUX_STREAM_RESET.name, tp.YAMUX_STREAM_CLOSED.name

            def yamux_ended() -> bool:
                # py-libp2p's flags are bools: no conversion on this per-snapshot path.
                return (
                    getattr(muxed, reset_name)
                    or getattr(muxed, closed_name)
                    or getattr(stream, state) is error
                )

            return yamux_ended
    elif isinstance(muxed, MplexStream):
        flags = [
            touchpoint.get(muxed)
            for touchpoint in (
                tp.MPLEX_STREAM_RESET,
                tp.MPLEX_STREAM_LOCAL_CLOSED,
                tp.MPLEX_STREAM_REMOTE_CLOSED,
            )
        ]
        if all(isinstance(flag, trio.Event) for flag in flags):
            reset, local, remote = flags  # created once in MplexStream.__init__

            def mplex_ended() -> bool:
                return (
                    reset.is_set()
                    or (local.is_set() and remote.is_set())
                    or getattr(stream, state) is error
                )

            return mplex_ended
    return lambda: wire_end(muxed)[0] or getattr(stream, state) is error


def stream_failed(stream: Any) -> bool:
    """Whether a ``NetStream`` is in py-libp2p's ERROR state (an unexpected I/O error)."""
    if not isinstance(stream, NetStream):
        return False
    state = tp.NETSTREAM_STATE.get(stream)
    return state is StreamState.ERROR


def muxer_shutting_down(muxed_conn: Any) -> bool:
    """Whether a yamux/mplex connection has started closing (``event_shutting_down``)."""
    if isinstance(muxed_conn, Yamux):
        return _is_set(tp.YAMUX_SHUTTING_DOWN.get(muxed_conn))
    if isinstance(muxed_conn, Mplex):
        return _is_set(tp.MPLEX_SHUTTING_DOWN.get(muxed_conn))
    return bool(getattr(muxed_conn, "is_closed", False))


def _root(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = exc.__cause__ or exc.__context__
        if cause is None:
            break
        exc = cause
    return exc


def failure_of(exc: BaseException) -> str | None:
    """Describe ``exc`` from a connection's I/O as a failure, or ``None`` for a clean end.

    A clean end is EOF at a frame boundary (py-libp2p's ``IncompleteReadError``
    with nothing received, possibly wrapped, e.g. in ``MplexUnavailable``).
    Anything else is a failure: ``"TypeName: message"``, at most
    :data:`MAX_REASON_CHARS` characters.
    """
    root = _root(exc)
    if isinstance(root, IncompleteReadError) and tp.INCOMPLETE_READ_RECEIVED.get(root) == 0:
        return None
    text = f"{type(root).__name__}: {root}".strip().rstrip(":")
    return text[:MAX_REASON_CHARS]


# ------------------------------------------------------------------ hooks

StreamCallback = Callable[[Any], None]
ErrorCallback = Callable[[BaseException], None]


def _log_failure(what: str) -> None:
    logger.exception("introspector: %s hook failed", what)


def _report_failure(failed: ErrorCallback, exc: BaseException, what: str) -> None:
    """``failed(exc)`` for what a wrapped ``what`` (read, write) raised; an exception
    ``failed`` raises itself is logged, never put in the place of the caller's. Runs
    only when the call failed, so the wrappers' happy path stays one ``try``."""
    try:
        failed(exc)
    except Exception:
        _log_failure(what)


def hook_stream(
    patcher: InstancePatcher,
    muxed: Any,
    *,
    before_reset: Callable[[], None],
    after_reset: Callable[[], None],
) -> bool:
    """Wrap ``muxed.reset()`` (an ``IMuxedStream`` method): callbacks around every local reset.

    ``after_reset`` runs even when the reset raised or was cancelled; the
    reset's own result or exception is what the caller gets. Returns whether
    the hook was installed (not twice on one stream).
    """

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        async def reset(*args: Any, **kwargs: Any) -> Any:
            try:
                before_reset()
            except Exception:
                _log_failure("stream reset")
            try:
                return await original(*args, **kwargs)
            finally:
                try:
                    after_reset()
                except Exception:
                    _log_failure("stream reset")

        return reset

    return tp.MUXED_RESET.hook(patcher, muxed, wrap, through_class=True)


def hook_muxer(
    patcher: InstancePatcher,
    muxed_conn: Any,
    *,
    stream_changed: StreamCallback,
    failed: ErrorCallback,
) -> bool:
    """Install the muxer's hooks: ``stream_changed(muxed_stream)`` after py-libp2p
    processed a close, FIN or reset of that stream, ``failed(exc)`` when mplex
    could not read a frame. Returns whether the muxer is one this module knows.
    """
    if isinstance(muxed_conn, Yamux):
        _hook_after_sync(patcher, muxed_conn, tp.YAMUX_FINALIZE, stream_changed)
        return True
    if isinstance(muxed_conn, Mplex):
        table = tp.MPLEX_STREAMS.get(muxed_conn)
        if isinstance(table, Mapping):
            for touchpoint in (tp.MPLEX_HANDLE_CLOSE, tp.MPLEX_HANDLE_RESET):
                _hook_by_stream_id(patcher, muxed_conn, touchpoint, table, stream_changed)
        hook_failures(patcher, muxed_conn, failed, touchpoints=(tp.MPLEX_READ_MESSAGE,))
        return True
    return False


def _hook_after_sync(
    patcher: InstancePatcher, obj: Any, touchpoint: Touchpoint, callback: StreamCallback
) -> None:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(stream: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(stream, *args, **kwargs)
            try:
                callback(stream)
            except Exception:
                _log_failure(touchpoint.name)
            return result

        return wrapper

    touchpoint.hook(patcher, obj, wrap, once=False, through_class=True)


def _hook_by_stream_id(
    patcher: InstancePatcher,
    obj: Any,
    touchpoint: Touchpoint,
    table: Mapping[Any, Any],
    callback: StreamCallback,
) -> None:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(stream_id: Any, *args: Any, **kwargs: Any) -> Any:
            stream = None
            try:
                stream = table.get(stream_id)
            except Exception:
                _log_failure(touchpoint.name)
            try:
                return await original(stream_id, *args, **kwargs)
            finally:
                if stream is not None:
                    try:
                        callback(stream)
                    except Exception:
                        _log_failure(touchpoint.name)

        return wrapper

    touchpoint.hook(patcher, obj, wrap, once=False, through_class=True)


def hook_failures(
    patcher: InstancePatcher,
    obj: Any,
    failed: ErrorCallback,
    *,
    touchpoints: tuple[Touchpoint, ...] = (tp.SECURED_READ, tp.SECURED_WRITE),
) -> None:
    """Wrap the async methods ``touchpoints`` of ``obj`` (default: a security
    session's ``read``/``write``): ``failed(exc)`` sees every ``Exception``
    they raise, which is then re-raised unchanged (cancellation is not an
    ``Exception`` and passes untouched)."""
    for touchpoint in touchpoints:
        name = touchpoint.name
        inline = _inline_failures(touchpoint, obj, failed)
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
        if inline is not None:
            wrap = lambda _original, inline=inline: inline  # noqa: E731
        elif touchpoint is tp.SECURED_READ:
            wrap = lambda original: _failure_reader(original, failed)  # noqa: E731
        else:
            wrap = lambda original, name=name: _failure_wrapper(original, failed, name)  # noqa: E731
        touchpoint.hook(patcher, obj, wrap, once=False)


def _inline_failures(
    touchpoint: Touchpoint, obj: Any, failed: ErrorCallback
) -> Callable[..., Any] | None:
    """For a security session whose class still has the ``write`` body checked against
    py-libp2p 0.8.1 (``SecureSession.write``: one ``await self.conn.write_msg(data)``):
    that body run here, its exceptions seen as :func:`_failure_wrapper` sees them, in
    one coroutine frame instead of two (it runs on every frame a connection sends).
    None (wrap instead) for anything else."""
    if touchpoint is not tp.SECURED_WRITE or not touchpoint.runs_checked_body(obj):
        return None
    conn = tp.SESSION_CONN.name

    async def write(data: bytes) -> None:
        try:
            await getattr(obj, conn).write_msg(data)
        except Exception as exc:
            _report_failure(failed, exc, "write")
            raise

    return write


def _failure_reader(original: Callable[..., Any], failed: ErrorCallback) -> Callable[..., Any]:
    """:func:`_failure_wrapper` for a security session's ``read(n)``, which runs on every
    chunk its muxer reads: ``n`` passed on as is, no ``*args``/``**kwargs`` packed on each
    call. A ``read`` with any other signature gets the generic wrapper."""
    try:
        parameters = list(inspect.signature(original).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    only = parameters[0] if len(parameters) == 1 else None
    if (
        only is None
        or only.name != "n"
        or only.kind is not only.POSITIONAL_OR_KEYWORD
        or only.default is only.empty  # a required n stays required: the generic wrapper
    ):
        return _failure_wrapper(original, failed, "read")
    default_n = only.default

    async def read(n: Any = default_n) -> Any:
        try:
            return await original(n)
        except Exception as exc:
            _report_failure(failed, exc, "read")
            raise

    return read


def _failure_wrapper(
    original: Callable[..., Any], failed: ErrorCallback, name: str
) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except Exception as exc:
            _report_failure(failed, exc, name)
            raise

    return wrapper


def hook_close(patcher: InstancePatcher, conn: Any, before_close: Callable[[], None]) -> None:
    """Wrap ``SwarmConn.close()``: ``before_close()`` runs first, on every call."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        async def close(*args: Any, **kwargs: Any) -> Any:
            try:
                before_close()
            except Exception:
                _log_failure("connection close")
            return await original(*args, **kwargs)

        return close

    tp.CONN_CLOSE.hook(patcher, conn, wrap, once=False, through_class=True)
