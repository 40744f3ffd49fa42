"""A client's side of discovery (PROTOCOL.md §6): reading the registry, choosing a
server, and mDNS on loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from libp2p_introspection.client import discovery
from libp2p_introspection.protocol.discovery import ServerEntry
from libp2p_introspection.server.announce import announce


def _entry(pid: int, port: int, started_ms: int = 1) -> ServerEntry:
    return ServerEntry(f"ws://127.0.0.1:{port}/introspect", f"peer-{port}", "py-libp2p", pid,
                       started_ms, False)  # fmt: skip


def _write(registry, name: str, data: bytes, mode: int = 0o600) -> None:
    path = registry / name
    path.write_bytes(data)
    path.chmod(mode)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def registry(_private_registry):
    _private_registry.mkdir(mode=0o700)
    return _private_registry


def test_a_missing_registry_is_no_server(_private_registry):
    found = discovery.read_registry()
    assert (found.entries, found.problems) == ([], [])
    assert not _private_registry.exists()  # a reader creates nothing


def test_entries_of_dead_processes_are_deleted_and_live_ones_kept(registry):
    dead = _dead_pid()
    _write(registry, f"{os.getpid()}-9001.json", _entry(os.getpid(), 9001, 2).to_json())
    _write(registry, f"{dead}-9002.json", _entry(dead, 9002).to_json())
    found = discovery.read_registry()
    assert [e.url for e in found.entries] == ["ws://127.0.0.1:9001/introspect"]
    assert found.removed == [str(registry / f"{dead}-9002.json")]
    assert sorted(p.name for p in registry.iterdir()) == [f"{os.getpid()}-9001.json"]


def test_unparseable_files_are_skipped_with_a_reason_and_kept(registry):
    _write(registry, "1-1.json", b"{not json")
    _write(registry, "1-2.json", b'{"url": "ws://x:1/introspect"}')
    _write(registry, "1-3.json", b"x" * 100_000)
    _write(registry, ".1-4.json.1234abcd", b"{half")  # being written: not looked at
    _write(registry, f"{os.getpid()}-9001.json", _entry(os.getpid(), 9001).to_json())
    found = discovery.read_registry()
    assert [e.url for e in found.entries] == ["ws://127.0.0.1:9001/introspect"]
    assert len(found.problems) == 3
    assert all("skipped" in problem for problem in found.problems)
    assert len(list(registry.iterdir())) == 5  # nothing deleted: none was a dead entry


def test_a_file_not_0600_or_not_regular_is_refused(registry, tmp_path):
    _write(registry, f"{os.getpid()}-9001.json", _entry(os.getpid(), 9001).to_json(), 0o644)
    target = tmp_path / "target.json"
    target.write_bytes(_entry(os.getpid(), 9002).to_json())
    target.chmod(0o600)
    (registry / f"{os.getpid()}-9002.json").symlink_to(target)
    os.mkfifo(registry / f"{os.getpid()}-9003.json", 0o600)  # would block a naive reader
    found = discovery.read_registry()
    assert found.entries == []
    assert len(found.problems) == 3
    assert any("0644, not 0600" in problem for problem in found.problems)
    assert any("regular" in problem for problem in found.problems)


def test_a_planted_registry_gives_no_entry_and_says_why(registry):
    _write(registry, f"{os.getpid()}-9001.json", _entry(os.getpid(), 9001).to_json())
    registry.chmod(0o777)
    found = discovery.read_registry()
    assert found.entries == []
    (problem,) = found.problems
    assert "0777, not 0700" in problem and str(registry) in problem


def test_choosing_a_server_without_a_url():
    one, two = _entry(1, 9001), _entry(2, 9002)
    assert discovery.choose([], None) is None  # the default URL then
    assert discovery.choose([one], None) is one
    assert discovery.choose([one, two], lambda entries: entries[1]) is two
    with pytest.raises(discovery.NoChoice) as raised:
        discovery.choose([one, two], None)
    assert one.url in str(raised.value) and two.url in str(raised.value)


def test_an_entry_is_described_safely_for_a_terminal():
    hostile = ServerEntry("ws://127.0.0.1:1/introspect", "peer\x1b[2J", "impl\u202e", 5, 0,
                          True)  # fmt: skip
    line = discovery.describe(hostile, now_ms=125_000)
    assert "\x1b" not in line and "\u202e" not in line
    assert "pid 5" in line and "token required" in line and "2m05s" in line


async def test_an_announced_server_is_found_by_browsing_on_loopback():
    """Real zeroconf, multicast on the loopback interface only."""
    entry = ServerEntry("ws://127.0.0.1:8851/introspect", "12D3KooWTestPeer", "py-libp2p",
                        os.getpid(), 1_700_000_000_000, True,
                        "http://127.0.0.1:8891/metrics")  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: announce(entry, 8851, "127.0.0.1", interfaces=["127.0.0.1"],
                                         task_status=task_status)
        )  # fmt: skip
        found = discovery.Found()
        for _ in range(5):  # bounded: each browse listens 2 s
            found = await trio.to_thread.run_sync(
                lambda: discovery.browse_lan(2.0, interfaces=["127.0.0.1"])
            )
            if found.entries:
                break
        nursery.cancel_scope.cancel()
    assert found.problems == []
    (lan,) = [e for e in found.entries if e.peer_id == "12D3KooWTestPeer"]
    assert lan.url == entry.url and lan.metrics_url == entry.metrics_url
    assert (lan.implementation, lan.started_ms, lan.token_required, lan.pid, lan.origin) == (
        "py-libp2p", 1_700_000_000_000, True, None, "lan"
    )
