"""Shared test configuration: where the recordings of ../shared/fixtures and the
specification ../shared/spec/PROTOCOL.md are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(
    os.environ.get("LIBP2P_INTROSPECTION_FIXTURES", REPO.parent / "shared" / "fixtures")
)

SPEC = Path(
    os.environ.get(
        "LIBP2P_INTROSPECTION_SPEC", REPO.parent / "shared" / "spec" / "PROTOCOL.md"
    )
)


@pytest.fixture(scope="session")
def spec_path() -> Path:
    """The specification, PROTOCOL.md; skips locally if absent, fails in CI."""
    if not SPEC.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the specification is not at {SPEC}")
        pytest.skip(f"the specification is not at {SPEC}")
    return SPEC


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The recordings of shared/fixtures; skips locally if absent, fails in CI."""
    if not (FIXTURES / "sample-1min.mock").exists():
        if os.environ.get("CI"):
            pytest.fail(f"fixture recordings not found in {FIXTURES}")
        pytest.skip(f"fixture recordings not found in {FIXTURES}")
    return FIXTURES


def pytest_configure(config: pytest.Config) -> None:
    """Servers started before any test's own registry exists (session and module
    fixtures, the processes they start) register in one for the whole run, never in
    the user's."""
    import tempfile

    runtime = tempfile.mkdtemp(prefix="libp2p-introspection-tests-")
    os.environ["XDG_RUNTIME_DIR"] = runtime
    config.stash[_SESSION_RUNTIME] = runtime


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    runtime = config.stash.get(_SESSION_RUNTIME, None)
    if runtime:
        shutil.rmtree(runtime, ignore_errors=True)


_SESSION_RUNTIME = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _private_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every process it starts) registers its servers in a registry
    of its own, never in the user's (PROTOCOL.md §6: ``$XDG_RUNTIME_DIR``)."""
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return runtime / "libp2p-introspection"
