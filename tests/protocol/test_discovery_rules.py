"""The pure rules of discovery (PROTOCOL.md §6): entries, trust, TXT records, ports."""

from __future__ import annotations

import json
import os
import stat

import pytest

from libp2p_introspection.protocol.discovery import (
    DASHBOARD_PORTS,
    INTROSPECTION_PORTS,
    METRICS_PORTS,
    SERVICE_TYPE,
    EntryError,
    ServerEntry,
    directory_refusal,
    entry_from_service,
    file_refusal,
    instance_name,
    is_entry_file_name,
    registry_dir,
    txt_properties,
)

PEER = "12D3KooWG7hpwMr9MqjgUsfKV9CxaWzZhpqNzq3Fgyd8ibjXJoA2"
ENTRY = ServerEntry(
    url="ws://127.0.0.1:8850/introspect", peer_id=PEER, implementation="py-libp2p",
    pid=4242, started_ms=1_700_000_000_000, token_required=True,
    metrics_url="http://127.0.0.1:8890/metrics",
)  # fmt: skip


def test_an_entry_file_round_trips_and_never_holds_a_token():
    data = ENTRY.to_json()
    assert ServerEntry.from_json(data) == ENTRY
    fields = json.loads(data)
    assert set(fields) == {"url", "peer_id", "implementation", "pid", "started_ms",
                           "token_required", "metrics_url"}  # fmt: skip
    assert "token" not in fields


@pytest.mark.parametrize(
    "change, why",
    [
        ({"pid": True}, "'pid'"),
        ({"pid": "12"}, "'pid'"),
        ({"pid": 0}, "out of range"),
        ({"url": "http://127.0.0.1:1/"}, "ws://"),
        ({"token_required": 1}, "'token_required'"),
        ({"metrics_url": 5}, "'metrics_url'"),
        ({"peer_id": None}, "'peer_id'"),
    ],
)
def test_a_malformed_entry_is_refused_with_the_reason(change, why):
    fields = json.loads(ENTRY.to_json()) | change
    with pytest.raises(EntryError, match=why):
        ServerEntry.from_json(json.dumps(fields).encode())


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xfe", b"[1, 2]", b'{"url": "ws://x:1/introspect"}', b"{" * 10_000,
             b" " * 20_000 + b"{}"],
)  # fmt: skip
def test_garbage_is_not_an_entry(data):
    with pytest.raises(EntryError):
        ServerEntry.from_json(data)


def test_the_registry_is_under_xdg_runtime_dir_else_a_per_user_temp_dir():
    assert registry_dir({"XDG_RUNTIME_DIR": "/run/user/1000"}, "/tmp", 1000) == (
        "/run/user/1000/libp2p-introspection"
    )
    for environ in ({}, {"XDG_RUNTIME_DIR": ""}, {"XDG_RUNTIME_DIR": "relative"}):
        assert registry_dir(environ, "/tmp", 1000) == "/tmp/libp2p-introspection-1000"


def test_only_finished_json_files_are_entries():
    assert is_entry_file_name("123-8845.json")
    assert not is_entry_file_name(".123-8845.json.ab12cd34")  # being written
    assert not is_entry_file_name("notes.txt")


def _stat(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


def test_a_directory_is_trusted_only_if_mine_and_0700():
    me = 1000
    assert directory_refusal("/r", _stat(stat.S_IFDIR | 0o700, me), me) is None
    planted = directory_refusal("/r", _stat(stat.S_IFDIR | 0o700, 1001), me)
    assert planted is not None and "1001" in planted and "remove it" in planted
    for mode in (0o755, 0o777, 0o710, 0o1777):
        reason = directory_refusal("/r", _stat(stat.S_IFDIR | mode, me), me)
        assert reason is not None and f"{mode:04o}" in reason
    assert "symbolic link" in directory_refusal("/r", _stat(stat.S_IFLNK | 0o777, me), me)
    assert "not a directory" in directory_refusal("/r", _stat(stat.S_IFREG | 0o700, me), me)


def test_a_file_is_trusted_only_if_a_regular_file_of_mine_and_0600():
    me = 1000
    assert file_refusal("/r/f", _stat(stat.S_IFREG | 0o600, me), me) is None
    assert "0644" in file_refusal("/r/f", _stat(stat.S_IFREG | 0o644, me), me)
    assert "1001" in file_refusal("/r/f", _stat(stat.S_IFREG | 0o600, 1001), me)
    assert "regular" in file_refusal("/r/f", _stat(stat.S_IFIFO | 0o600, me), me)


def test_the_txt_record_has_the_keys_of_section_6_and_parses_back():
    properties = txt_properties(ENTRY, "/introspect")
    assert properties == {
        "path": "/introspect", "peer_id": PEER, "impl": "py-libp2p",
        "started_ms": "1700000000000", "token": "required", "metrics": "8890",
    }  # fmt: skip
    raw = {key.encode(): value.encode() for key, value in properties.items()}
    found = entry_from_service(raw, ["192.0.2.7"], 8850)
    assert found.url == "ws://192.0.2.7:8850/introspect"
    assert found.metrics_url == "http://192.0.2.7:8890/metrics"
    assert (found.peer_id, found.implementation, found.started_ms, found.token_required) == (
        PEER, "py-libp2p", 1_700_000_000_000, True
    )
    assert found.pid is None and found.origin == "lan"
    plain = txt_properties(
        ServerEntry("ws://h:1/introspect", PEER, "py-libp2p", 1, 5, False), "/introspect"
    )
    assert plain["token"] == "none" and plain["metrics"] == ""
    raw = {key.encode(): value.encode() for key, value in plain.items()}
    assert entry_from_service(raw, ["fd00::2"], 8845).url == "ws://[fd00::2]:8845/introspect"


@pytest.mark.parametrize(
    "change, why",
    [
        ({b"peer_id": None}, "peer_id"),
        ({b"token": b"maybe"}, "token"),
        ({b"started_ms": b"-5"}, "started_ms"),
        ({b"path": b"introspect"}, "path"),
        ({b"impl": b"\xff"}, "UTF-8"),
    ],
)
def test_an_announcement_that_makes_no_sense_is_refused(change, why):
    raw = {k.encode(): v.encode() for k, v in txt_properties(ENTRY, "/introspect").items()}
    raw.update(change)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(EntryError, match=why):
        entry_from_service(raw, ["192.0.2.7"], 8850)
    with pytest.raises(EntryError, match="address"):
        entry_from_service(raw, [], 8850)


def test_service_type_and_instance_name_fit_dns_sd():
    assert SERVICE_TYPE == "_p2p-introspect._tcp.local."
    assert len(SERVICE_TYPE.split(".")[0].removeprefix("_")) <= 15
    name = instance_name(ServerEntry("ws://h:1/x", "x" * 200, "i" * 100, 1, 1, False), 8845)
    assert len(name.encode()) <= 63


def test_the_default_ports_and_their_fallbacks():
    assert INTROSPECTION_PORTS.candidates() == [8845, *range(8850, 8870)]
    assert DASHBOARD_PORTS.candidates() == [8846, *range(8870, 8890)]
    assert METRICS_PORTS.candidates() == [8847, *range(8890, 8910)]
    ranges = [set(plan.candidates()) for plan in (INTROSPECTION_PORTS, DASHBOARD_PORTS,
                                                   METRICS_PORTS)]  # fmt: skip
    assert not (ranges[0] & ranges[1] or ranges[1] & ranges[2] or ranges[0] & ranges[2])
