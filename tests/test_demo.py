"""`photon demo`: the newcomer's first command, offline, on a fresh install."""

from __future__ import annotations

import pytest
from conftest import run_photon

pytestmark = pytest.mark.slow


def test_demo_indexes_searches_and_finds_the_planted_copies(tmp_path) -> None:
    out = run_photon("demo", "--dir", tmp_path / "demo").stdout
    assert "drew 60 pictures and 4 copies" in out
    assert "indexed 62 pictures and reused 2 embeddings" in out  # exact copies: no model call
    lines = out.splitlines()
    assert sum(line.startswith('search "') for line in lines) == 3
    assert any(line.startswith("search by picture") for line in lines)
    assert out.count("[a planted copy]") == 4, out
    assert (tmp_path / "demo" / "db" / "images.lance").is_dir()
    assert "try it yourself: photon search" in out
