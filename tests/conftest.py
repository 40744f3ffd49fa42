"""Shared test configuration: where the recordings of ../shared/fixtures are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(
    os.environ.get("LIBP2P_INTROSPECTION_FIXTURES", REPO.parent / "shared" / "fixtures")
)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The recordings of shared/fixtures; skips locally if absent, fails in CI."""
    if not (FIXTURES / "sample-1min.mock").exists():
        if os.environ.get("CI"):
            pytest.fail(f"fixture recordings not found in {FIXTURES}")
        pytest.skip(f"fixture recordings not found in {FIXTURES}")
    return FIXTURES


@pytest.fixture(autouse=True)
def _private_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every process it starts) registers its servers in a registry
    of its own, never in the user's (PROTOCOL.md §6: ``$XDG_RUNTIME_DIR``)."""
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return runtime / "libp2p-introspection"
