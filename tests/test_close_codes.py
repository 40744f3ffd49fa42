"""Close codes are defined once (issue 11): protocol/closecodes.py names every WebSocket
close code the project sends or reports, and no other module writes one as a literal.

Read from the source (an AST walk, as tests/test_layers.py): a 4-digit integer
literal (1000-4999, RFC 6455 §7.4) given to a call whose callee's name holds
"close" (``CloseConnection(code=1009)``, ``ClosedByPeer(1006, ...)``,
``WebSocketClose(code=1008)``, ``ws.aclose(1001)``), compared with a ``code``
attribute (``reason.code == 1009``), or bound to a ``CLOSE_*`` name, is a restated
close code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "libp2p_introspection"
OWNER = PACKAGE / "protocol" / "closecodes.py"


def _is_code(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and 1000 <= node.value <= 4999


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _literal_close_codes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_code(node.value):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            found += [f"{path.name}:{node.lineno} {n} =" for n in names if "CLOSE" in n]
        elif isinstance(node, ast.Call) and "close" in _callee(node).lower():
            values = [*node.args, *(keyword.value for keyword in node.keywords)]
            found += [f"{path.name}:{v.lineno} {_callee(node)}({v.value})"  # type: ignore[attr-defined]
                      for v in values if _is_code(v)]  # fmt: skip
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "code" for s in sides):
                found += [f"{path.name}:{s.lineno} .code vs {s.value}"  # type: ignore[attr-defined]
                          for s in sides if _is_code(s)]  # fmt: skip
    return found


def test_no_module_but_closecodes_writes_a_close_code_literal():
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER
        for hit in _literal_close_codes(path)
    ]
    assert found == [], "use libp2p_introspection.protocol.closecodes: " + ", ".join(found)


def test_the_walk_sees_a_literal_close_code(tmp_path):
    """The criterion catches each form it names (so the test above can fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "CloseConnection(code=1009, reason='x')\n"
        "ClosedByPeer(1006, 'gone')\n"
        "if reason.code == 1009: pass\n"
        "ws.aclose(1001)\n"
        "CLOSE_INVALID_DATA = 1007\n"
        "close(timeout=1000 * 2)\n"  # not a code: an expression
    )
    assert len(_literal_close_codes(sample)) == 5


def test_closecodes_defines_each_code_once():
    tree = ast.parse(OWNER.read_text(encoding="utf-8"))
    values = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    ]
    assert values and len(values) == len(set(values))
