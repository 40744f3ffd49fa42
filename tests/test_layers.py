"""The layers hold (issue 11): config.py (defaults, text helpers) a leaf, protocol/ at
the bottom (pure: no trio, no py-libp2p), server/ and introspector/ above it and blind
to each other, client/ above protocol,
attach.py and the CLI on top, and nothing but the CLI imports the dashboard.

Read from the source: every import statement of every module, lazy ones in
functions included, so a layer cannot be crossed by an import hidden in a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "libp2p_introspection"
ROOT = "libp2p_introspection"

#: layer -> what its modules must not import (module name prefixes).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # The shared defaults and text helpers: a leaf, so that protocol/ may use them.
    "config": (ROOT, "trio", "libp2p", "multiaddr"),
    "protocol": ("trio", "libp2p", "multiaddr", f"{ROOT}.abc", f"{ROOT}.server",
                 f"{ROOT}.introspector", f"{ROOT}.client", f"{ROOT}.dashboard",
                 f"{ROOT}.demo", f"{ROOT}.attach", f"{ROOT}.cli"),
    "server": ("libp2p", f"{ROOT}.introspector", f"{ROOT}.client", f"{ROOT}.dashboard",
               f"{ROOT}.demo", f"{ROOT}.attach", f"{ROOT}.cli"),
    "introspector": (f"{ROOT}.server", f"{ROOT}.client", f"{ROOT}.dashboard", f"{ROOT}.demo",
                     f"{ROOT}.attach", f"{ROOT}.cli"),
    "client": ("libp2p", f"{ROOT}.server", f"{ROOT}.introspector", f"{ROOT}.dashboard",
               f"{ROOT}.demo", f"{ROOT}.attach", f"{ROOT}.cli"),
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_pb2" not in p.name)


def _crosses(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_of_a_layer_imports_above_or_beside_it(layer: str) -> None:
    crossings = [
        f"{_module_name(path)} imports {name}"
        for path in _modules()
        if _module_name(path).split(".")[1:2] == [layer]
        for name in sorted(_imports(path))
        for prefix in FORBIDDEN[layer]
        if _crosses(name, prefix)
    ]
    assert crossings == []


def test_only_the_cli_imports_the_dashboard() -> None:
    importers = {
        _module_name(path)
        for path in _modules()
        if _module_name(path).split(".")[1:2] != ["dashboard"]
        and any(_crosses(name, f"{ROOT}.dashboard") for name in _imports(path))
    }
    assert importers and all(_crosses(name, f"{ROOT}.cli") for name in importers), importers


def test_the_checker_sees_imports_inside_functions() -> None:
    """The CLI imports the dashboard only inside its commands: the walk still finds it."""
    serving = PACKAGE / "cli" / "serving.py"
    tree = ast.parse(serving.read_text(encoding="utf-8"))
    top_level = {
        node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any(_crosses(name, f"{ROOT}.dashboard") for name in top_level)
    assert any(_crosses(name, f"{ROOT}.dashboard") for name in _imports(serving))


def test_the_event_vocabulary_is_split_along_its_seams():
    """protocol/events.py (specs, payload builders, emitter: 453 lines) is three modules:
    the types, their content builders and the emitter, each importable on its own and
    all re-exported by events.py for the modules that use the vocabulary whole."""
    from libp2p_introspection.protocol import event_payloads, event_specs, events

    assert event_specs.CONNECTION_OPENED is events.CONNECTION_OPENED
    assert event_payloads.connection_opened is events.connection_opened
    assert not hasattr(event_specs, "EventEmitter") and not hasattr(event_payloads, "build_event")
    for module in ("event_specs.py", "event_payloads.py", "events.py"):
        assert len((PACKAGE / "protocol" / module).read_text().splitlines()) <= 400, module
