"""The py-libp2p touchpoints table: every entry exists in the installed py-libp2p, and
no introspector module reaches a py-libp2p internal except through the table.

A py-libp2p upgrade that renames or removes one of the internals the introspector
relies on fails :func:`test_every_touchpoint_exists_in_the_installed_py_libp2p`
(instead of a warning logged at run time); an introspector change that reads a
new internal without listing it fails :func:`test_no_py_libp2p_internal_outside_the_table`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
from pathlib import Path

import libp2p
import libp2p.abc
import pytest
import trio
from google.protobuf.message import Message
from introspector_harness import connect, running_hosts
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.stream_muxer.yamux.yamux import Yamux

from libp2p_introspection import introspector
from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.protocol import pb

INTROSPECTOR = Path(introspector.__file__).parent
#: The table's own module, and the patcher (which sets whatever name it is given).
ALLOWED = {"touchpoints.py", "patching.py"}
#: Public names of other libraries (or of py-libp2p value types) that a py-libp2p
#: class happens to define too, read on objects that are not py-libp2p internals.
NOT_INTERNAL = {
    "to_base58": "libp2p.peer.id.ID's public API (peer ids are values)",
    "socket": "trio.SocketStream.socket, found by the walk",
    "is_running": "async_service ManagerAPI.is_running, of the manager get_manager() returns",
    "digest": "hashlib's",
    "data": "a pubsub message's payload (rpc_pb2.Message.data, a protobuf field)",
}


def _class_members(tree: ast.AST) -> set[str]:
    """Names classes in ``tree`` define: methods, class attributes, ``self.<name>`` stores."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names.add(item.target.id)
            elif isinstance(item, ast.Assign):
                names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.ctx, ast.Store)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "self"
            ):
                names.add(sub.attr)
        slots = [
            item.value
            for item in node.body
            if isinstance(item, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets)
        ]
        for value in slots:
            names.update(
                e.value for e in getattr(value, "elts", ()) if isinstance(e, ast.Constant)
            )
    return names


def _py_libp2p_names() -> tuple[set[str], set[str]]:
    """(names py-libp2p classes define, names its ``libp2p.abc`` interfaces declare)."""
    defined: set[str] = set()
    for path in Path(libp2p.__file__).parent.rglob("*.py"):
        if path.name.endswith("_pb2.py"):
            continue
        try:
            defined |= _class_members(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError):
            continue
    interface: set[str] = set()
    for value in vars(libp2p.abc).values():
        if inspect.isclass(value) and value.__module__ == "libp2p.abc":
            interface |= set(vars(value)) | set(getattr(value, "__annotations__", {}))
    return defined, interface


def _ours(trees: dict[str, ast.AST]) -> set[str]:
    """Names the introspector defines itself (class members, module-level names)."""
    names: set[str] = set()
    for tree in trees.values():
        names |= _class_members(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
    return names


def _not_internal() -> set[str]:
    """Names of builtin types, protobuf messages and our protocol's fields."""
    names: set[str] = set(NOT_INTERNAL)
    for kind in (dict, list, set, str, bytes, int, float, object, Exception, Message):
        names |= set(dir(kind))
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        stack = [message]
        while stack:
            descriptor = stack.pop()
            names |= {field.name for field in descriptor.fields}
            names |= set(descriptor.enum_values_by_name)
            for enum in descriptor.enum_types:
                names |= set(enum.values_by_name)
            stack.extend(descriptor.nested_types)
    names |= set(pb.DESCRIPTOR.enum_types_by_name)
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        names |= set(enum.values_by_name)
    return names


def _imported(tree: ast.AST) -> set[str]:
    """Names a module binds by import, and its ``logger``: bases whose public
    attributes are a library's API (``pb.DHT``, ``Direction.INBOUND``, ``logger.debug``)."""
    names = {"logger"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _literal_name(call: ast.Call) -> str | None:
    if len(call.args) > 1 and isinstance(call.args[1], ast.Constant):
        value = call.args[1].value
        return value if isinstance(value, str) else None
    return None


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def violations() -> list[str]:
    """Every place outside the table where an introspector module names a py-libp2p
    internal, replaces a method or walks ``vars()``."""
    trees = {
        path.name: ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(INTROSPECTOR.glob("*.py"))
    }
    defined, interface = _py_libp2p_names()
    internal = defined - interface
    ours = _ours(trees)
    harmless = _not_internal()
    found: list[str] = []
    for module, tree in trees.items():
        if module in ALLOWED:
            continue
        imported = _imported(tree)
        for node in ast.walk(tree):
            where = f"{module}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("libp2p."):
                found += [
                    f"{where}: imports py-libp2p's private {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = _literal_name(node)
                if node.func.id == "vars":
                    found.append(f"{where}: vars() walk outside touchpoints.find_in_graph")
                elif (
                    node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                    and name
                    and not _is_dunder(name)
                    and (name.startswith("_") or name in internal)
                ):
                    found.append(f"{where}: {node.func.id}(..., {name!r})")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = _literal_name(node)
                if node.func.attr == "patch" and name:
                    found.append(f"{where}: replaces {name!r} outside the table")
            elif isinstance(node, ast.Attribute):
                base = node.value
                name = node.attr
                if _is_dunder(name) or name in ours:
                    continue
                library = isinstance(base, ast.Name) and base.id in imported
                if name.startswith("_") or (
                    name in internal and name not in harmless and not library
                ):
                    found.append(f"{where}: .{name}")
    return found


def test_no_py_libp2p_internal_outside_the_table() -> None:
    """Every py-libp2p name outside its interfaces is read through touchpoints.py."""
    assert violations() == []


def test_the_scan_finds_a_private_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan is not blind: the reads the table replaced are found when written raw."""
    for path in INTROSPECTOR.glob("*.py"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "extra.py").write_text(
        "def role(stream, conn, swarm, patcher, dht):\n"
        "    conn._created_at\n"
        "    getattr(stream, '_direction', None)\n"
        "    dht.routing_table.bucket_size\n"
        "    patcher.patch(swarm, 'upgrade_security', None)\n"
        "    vars(conn)\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(globals()["introspector"], "__file__", str(tmp_path / "__init__.py"))
    monkeypatch.setitem(globals(), "INTROSPECTOR", tmp_path)
    found = violations()
    assert sorted(v.split(": ", 1)[1] for v in found if v.startswith("extra.py")) == sorted([
        "._created_at",
        "getattr(..., '_direction')",
        ".routing_table",
        ".bucket_size",
        "replaces 'upgrade_security' outside the table",
        "vars() walk outside touchpoints.find_in_graph",
    ])


def test_every_touchpoint_exists_in_the_installed_py_libp2p() -> None:
    """Each entry names an attribute its py-libp2p classes have (a method for a call or
    a hook, a module constant for a constant): what an upgrade must keep."""
    lacking = {f"{t.owner}.{t.name}": t.present() for t in tp.TOUCHPOINTS if t.present()}
    assert lacking == {}
    assert len({(t.owners, t.name) for t in tp.TOUCHPOINTS}) == len(tp.TOUCHPOINTS)
    kinds = {tp.READ, tp.CALL, tp.HOOK, tp.SWAP, tp.WALK, tp.CONSTANT}
    assert all(t.kind in kinds and t.use and t.without for t in tp.TOUCHPOINTS)


def test_a_removed_attribute_is_reported_missing() -> None:
    """What the upgrade check sees when py-libp2p drops an attribute or turns a method
    into something else: the entry's classes that lack it."""
    gone = dataclasses.replace(tp.CONN_CREATED_AT, name="_created_at_gone")
    assert gone.present() == ["SwarmConn"]
    not_a_method = dataclasses.replace(tp.YAMUX_FINALIZE, name="event_shutting_down")
    assert not_a_method.present() == ["Yamux"]
    constant = dataclasses.replace(tp.KAD_QUERY_TIMEOUT, name="QUERY_TIMEOUT_GONE")
    assert constant.present() == ["libp2p.kad_dht.common"]
    both = dataclasses.replace(tp.MUXER_SECURED_CONN, name="secured_conn_gone")
    assert both.present() == ["Yamux", "Mplex"]


def test_missing_touchpoint_reads_default_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """A miss on an instance of the entry's class warns once; on any other object
    (a stand-in, a transport py-libp2p does not own) it is silent."""
    touchpoint = dataclasses.replace(tp.YAMUX_RTT, name="_not_in_this_version")
    caplog.set_level(logging.WARNING, logger="libp2p_introspection")
    assert touchpoint.get(object(), "fallback") == "fallback"
    assert [r for r in caplog.records if "_not_in_this_version" in r.getMessage()] == []
    yamux = Yamux.__new__(Yamux)
    assert touchpoint.get(yamux, "fallback") == "fallback"
    assert touchpoint.get(yamux) is None
    assert not touchpoint.has(yamux)
    warnings = [r for r in caplog.records if "_not_in_this_version" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "Yamux._not_in_this_version" in warnings[0].getMessage()
    assert tp.YAMUX_RTT.without in warnings[0].getMessage()


@pytest.mark.parametrize("muxer", [{}, {"muxer_preference": "MPLEX"}], ids=["yamux", "mplex"])
async def test_the_walk_takes_the_listed_route(muxer: dict[str, str]) -> None:
    """On a real connection (Noise over TCP), the WALK entries lead from the security
    session to the RawConnection and on to the trio socket, as find_in_graph finds them."""
    with trio.fail_after(30):
        async with running_hosts(2, **muxer) as (h1, h2):
            await connect(h1, h2)
            (conn,) = h1.get_network().get_connections()
            secured = tp.MUXER_SECURED_CONN.get(conn.muxed_conn)
            reader = tp.SESSION_CONN.get(secured)
            raw = tp.NOISE_CONN.get(reader)
            assert isinstance(raw, RawConnection)
            assert tp.find_in_graph(secured, lambda o: o is raw) is raw
            sock = tp.TCP_STREAM.get(tp.RAW_STREAM.get(raw))
            assert isinstance(sock, trio.SocketStream)
            assert tp.find_in_graph(raw, lambda o: isinstance(o, trio.SocketStream), 3) is sock
