"""Attacks on endings._report_failure (b1d445f), shared by the failure wrappers of a
security session's read and write (inline write, one-argument read, generic wrapper):
the caller's exception is re-raised unchanged (the same object, its context untouched),
a ``failed`` callback that raises is logged and never replaces it, and cancellation
passes through without ``failed`` hearing of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from libp2p.security.secure_session import SecureSession

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.endings import hook_failures
from libp2p_introspection.introspector.patching import InstancePatcher


class _Conn:
    def __init__(self, error: BaseException | None, block: bool = False) -> None:
        self.error = error
        self.block = block

    async def write_msg(self, data: bytes) -> None:
        if self.block:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error

    async def read_msg(self) -> bytes:
        if self.block:
            await trio.sleep_forever()
        if self.error is not None:
            raise self.error
        return b"x"


def _session(conn: _Conn) -> SecureSession:
    session = object.__new__(SecureSession)
    session.conn = conn  # type: ignore[assignment]
    session._buf = bytearray()  # type: ignore[attr-defined]
    session.low_watermark = 0  # type: ignore[attr-defined]
    session.high_watermark = 0  # type: ignore[attr-defined]
    return session


async def _generic_read(self: Any, *args: Any, **kwargs: Any) -> bytes:  # not read(n)
    return await self.conn.read_msg()


# (what is called, how): the inline write (the checked 0.8.1 body), the one-argument
# read wrapper, and the generic wrapper (a read of another signature).
CALLS = ["inline write", "read(n)", "generic read"]


def _hooked(how: str, conn: _Conn, failed: Any) -> Any:
    session = _session(conn)
    if how == "generic read":
        session.read = _generic_read.__get__(session)  # type: ignore[method-assign]
    hook_failures(InstancePatcher(), session, failed)
    if how == "inline write":
        assert tp.SECURED_WRITE.runs_checked_body(_session(conn)), "inline body not in use"
        return lambda: session.write(b"data")
    if how == "read(n)":
        return lambda: session.read(1)
    return lambda: session.read()


@pytest.mark.parametrize("how", CALLS)
async def test_the_callers_exception_propagates_unchanged(how: str) -> None:
    cause = KeyError("cause")
    boom = OSError("broken pipe")
    boom.__cause__ = cause
    seen: list[BaseException] = []
    call = _hooked(how, _Conn(boom), seen.append)
    with pytest.raises(OSError) as info:
        await call()
    assert info.value is boom
    assert boom.__cause__ is cause and boom.__context__ is None
    assert seen == [boom]


@pytest.mark.parametrize("how", CALLS)
async def test_a_raising_callback_is_logged_and_never_replaces_the_error(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="libp2p_introspection")
    boom = OSError("broken pipe")

    def failed(exc: BaseException) -> None:
        raise RuntimeError("callback bug")

    call = _hooked(how, _Conn(boom), failed)
    with pytest.raises(OSError) as info:
        await call()
    assert info.value is boom
    assert boom.__context__ is None  # the callback's error is not chained onto it
    logged = [r for r in caplog.records if "hook failed" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], RuntimeError)
    word = "write" if how == "inline write" else "read"
    assert f"{word} hook failed" in logged[0].getMessage()


@pytest.mark.parametrize("how", CALLS)
async def test_the_callback_may_raise_the_very_error_it_was_given(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="libp2p_introspection")
    boom = OSError("broken pipe")

    def failed(exc: BaseException) -> None:
        raise exc

    call = _hooked(how, _Conn(boom), failed)
    with pytest.raises(OSError) as info:
        await call()
    assert info.value is boom


@pytest.mark.parametrize("how", CALLS)
async def test_cancellation_passes_untouched(how: str) -> None:
    seen: list[BaseException] = []
    call = _hooked(how, _Conn(None, block=True), seen.append)
    with trio.move_on_after(0.01) as scope:
        await call()
    assert scope.cancelled_caught
    assert seen == []


@pytest.mark.parametrize("how", CALLS)
async def test_success_does_not_call_the_callback(how: str) -> None:
    seen: list[BaseException] = []
    call = _hooked(how, _Conn(None), seen.append)
    await call()
    assert seen == []
