"""Attacks on endings._failure_reader (the one-argument SecureSession.read wrapper)."""

from __future__ import annotations

import pytest
import trio

from libp2p_introspection.introspector.endings import _failure_reader


def test_failure_reader_reraises_same_error_and_reports() -> None:
    seen: list[BaseException] = []
    boom = ValueError("x")

    async def read(n: int | None = None) -> bytes:
        raise boom

    wrapped = _failure_reader(read, seen.append)

    async def main() -> None:
        with pytest.raises(ValueError) as info:
            await wrapped(n=3)
        assert info.value is boom

    trio.run(main)
    assert seen == [boom]


def test_failure_reader_keeps_required_n_required() -> None:
    """A read whose n has no default must still refuse a call without n (as the generic
    wrapper and the original do), not be called with n=None."""
    calls: list[object] = []

    async def read(n: int) -> bytes:
        calls.append(n)
        return b""

    wrapped = _failure_reader(read, lambda exc: None)

    async def main() -> None:
        with pytest.raises(TypeError):
            await wrapped()

    trio.run(main)
    assert calls == []
