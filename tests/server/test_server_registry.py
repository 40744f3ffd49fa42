"""A server's side of discovery (PROTOCOL.md §6): its registry entry and its ports."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
import trio
from stub_source import StubSource

from libp2p_introspection.client.discovery import read_registry
from libp2p_introspection.protocol.discovery import PortPlan
from libp2p_introspection.protocol.limits import OptionError
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.registry import bind_first_free


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def test_a_server_registers_while_it_serves_and_removes_its_entry(_private_registry):
    registry = _private_registry
    assert not registry.exists()
    config = ServerConfig(port=0, token="s3cret-token")
    metrics = "http://127.0.0.1:8890/metrics"
    async with open_introspection_server(StubSource(), config, metrics_url=metrics) as server:
        files = list(registry.iterdir())
        assert [f.name for f in files] == [f"{os.getpid()}-{server.port}.json"]
        assert _mode(registry) == 0o700 and _mode(files[0]) == 0o600
        fields = json.loads(files[0].read_bytes())
        assert fields == {
            "url": server.url, "peer_id": "QmStub", "implementation": "stub",
            "pid": os.getpid(), "started_ms": server.started_ms, "token_required": True,
            "metrics_url": metrics,
        }  # fmt: skip
        assert "s3cret-token" not in files[0].read_text()
        assert [entry.url for entry in read_registry().entries] == [server.url]
    assert list(registry.iterdir()) == []


async def test_a_server_asked_not_to_register_writes_nothing(_private_registry):
    async with open_introspection_server(StubSource(), ServerConfig(port=0, register=False)):
        assert not _private_registry.exists() or list(_private_registry.iterdir()) == []


@pytest.mark.parametrize("mode", [0o755, 0o777, 0o1777])
async def test_a_planted_registry_directory_is_refused_and_the_server_still_serves(
    _private_registry, caplog, mode
):
    """Someone made the directory first, open to others, and planted an entry: the
    server writes nothing there, says why, and serves; readers use nothing from it."""
    registry = _private_registry
    registry.mkdir()
    registry.chmod(mode)
    planted = registry / f"{os.getpid()}-1.json"
    planted.write_text(json.dumps({
        "url": "ws://evil.example:1/introspect", "peer_id": "x", "implementation": "x",
        "pid": os.getpid(), "started_ms": 0, "token_required": False, "metrics_url": None,
    }))  # fmt: skip
    planted.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="libp2p_introspection.server.registry"):
        async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
            assert server.registration is None
            assert [f.name for f in registry.iterdir()] == [planted.name]
            found = read_registry()
            assert found.entries == []
            assert len(found.problems) == 1 and f"{mode:04o}" in found.problems[0]
    assert any(f"{mode:04o}, not 0700" in record.getMessage() for record in caplog.records)
    assert planted.exists()  # not ours to delete


async def test_a_symbolic_link_as_the_registry_is_refused(_private_registry, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    _private_registry.symlink_to(elsewhere)
    async with open_introspection_server(StubSource(), ServerConfig(port=0)) as server:
        assert server.registration is None
        assert list(elsewhere.iterdir()) == []
    assert "symbolic link" in read_registry().problems[0]


def _listening(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


async def test_without_a_port_the_next_free_one_of_the_range_is_taken_and_logged(caplog):
    sockets = sorted((_listening() for _ in range(4)), key=lambda s: s.getsockname()[1])
    ports = [s.getsockname()[1] for s in sockets]
    sockets.pop().close()  # the highest is free; the three below it are taken
    # A plan whose candidates are exactly these ports, in this order.
    gaps = frozenset(range(ports[1], ports[3] + 1)) - set(ports)
    plan = PortPlan("the test endpoint", ports[0], ports[1], ports[3], skip=gaps)
    assert plan.candidates() == ports
    attempts: list[int] = []

    async def bind(port: int) -> trio.SocketListener:
        attempts.append(port)
        (listener,) = await trio.open_tcp_listeners(port, host="127.0.0.1")
        return listener

    try:
        with caplog.at_level(logging.INFO, logger="libp2p_introspection.server.registry"):
            listener, port = await bind_first_free(plan, "127.0.0.1", bind)
        assert port == ports[3] and attempts == ports
        await listener.aclose()
        assert any(
            f"takes port {ports[3]}: port {ports[0]} is in use" in r.getMessage()
            for r in caplog.records
        )
        every_taken = PortPlan("the test endpoint", ports[0], ports[1], ports[2], skip=gaps)
        with pytest.raises(OSError, match="every default port") as raised:
            await bind_first_free(every_taken, "127.0.0.1", bind)
        assert raised.value.errno == errno.EADDRINUSE
    finally:
        for sock in sockets:
            sock.close()


async def test_an_explicit_port_that_is_taken_is_an_error_not_a_fallback():
    sock = _listening()
    try:
        with pytest.raises(OSError) as raised:
            async with open_introspection_server(
                StubSource(), ServerConfig(port=sock.getsockname()[1])
            ):
                pass  # pragma: no cover
        assert raised.value.errno == errno.EADDRINUSE
    finally:
        sock.close()


def test_announcing_a_loopback_server_is_refused_naming_host():
    with pytest.raises(OptionError, match=r"host 127\.0\.0\.1 is a loopback address"):
        ServerConfig(announce=True)
    ServerConfig(announce=True, host="0.0.0.0", allow_remote=True)  # accepted
