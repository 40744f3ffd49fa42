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
