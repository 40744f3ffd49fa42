"""The session module's opening rule map stays true: every function it names exists,
and every test it names exists in the file it names (one row per rule of §4)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import libp2p_introspection.protocol.session as session_module

ROOT = Path(__file__).resolve().parents[2]


def _rows() -> list[tuple[str, str, str]]:
    """(section, functions, tests) of every row, continuation lines joined."""
    doc = session_module.__doc__ or ""
    lines = doc[doc.index("=====  ") :].splitlines()
    header = lines[1]
    function_at, test_at = header.index("function"), header.index("test")
    rows: list[list[str]] = []
    for line in lines[3:]:
        if line.startswith("====="):
            break
        section = line[:7].strip()
        function, test = line[function_at:test_at], line[test_at:]
        if section:
            rows.append([section, function, test])
        else:
            rows[-1][1] += " " + function
            rows[-1][2] += " " + test
    return [(section, function, test) for section, function, test in rows]


def _lookup(dotted: str) -> object:
    """``server.hub.Hub.publish_snapshot`` (under libp2p_introspection) or ``Session._hold``
    (in the session module)."""
    parts = dotted.split(".")
    if parts[0] in {"server", "abc"}:
        for split in range(len(parts), 0, -1):
            try:
                owner: object = importlib.import_module(
                    "libp2p_introspection." + ".".join(parts[:split])
                )
            except ImportError:
                continue
            for part in parts[split:]:
                owner = getattr(owner, part)
            return owner
        raise AssertionError(dotted)
    owner = session_module
    for part in parts:
        owner = getattr(owner, part)
    return owner


def test_every_section_of_4_has_rows():
    assert {section for section, _, _ in _rows()} == {f"4.{n}" for n in range(1, 11)}


def test_every_function_named_exists():
    for section, functions, _ in _rows():
        last_class: object = session_module.Session
        for name in re.findall(r"[A-Za-z_][\w.]*", functions):
            if "." in name or name[0].isupper():
                found = _lookup(name)
                if "." in name:
                    owner = _lookup(name.rpartition(".")[0])
                    last_class = owner if isinstance(owner, type) else last_class
                elif isinstance(found, type):
                    last_class = found
            else:
                found_here = hasattr(last_class, name) or hasattr(session_module, name)
                assert found_here, (section, name, last_class)


def test_every_test_named_exists_in_its_file():
    count = 0
    for section, _, tests in _rows():
        for ref in tests.replace(";", " ").split():
            path, _, name = ref.rpartition("::")
            if path.startswith("tests/"):
                file = ROOT / path
            elif path == "e2e":
                file = ROOT / "tests/server/test_server_e2e.py"
            else:
                file = ROOT / "tests/protocol" / (path or "test_session.py")
            assert re.search(rf"^(async )?def {name}\(", file.read_text(), re.M), (section, ref)
            count += 1
    assert count >= len(_rows())
