"""The CLI as a user meets it: `models`, `process`, `info`, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, real_photo, run_photon

pytestmark = pytest.mark.slow


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "coffee.jpg"
    real_photo("coffee").save(path, quality=92)
    return path


def assert_one_line_error(result, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_models_list_shows_the_bundled_model_and_device() -> None:
    listing = json.loads(run_photon("models", "list", "--json").stdout)
    names = {m["name"]: m for m in listing["models"]}
    assert names[TINY]["installed"] and names[TINY]["bundled"]
    assert names[TINY]["size_bytes"] > 0
    assert not names["siglip-base-patch16-224"]["installed"]
    assert listing["device"] == "cpu"
    assert TINY in run_photon("models", "list").stdout


def test_models_path_is_under_photon_home(isolated: Path) -> None:
    out = run_photon("models", "path", "siglip-base-patch16-224").stdout.strip()
    assert out == str(isolated / "models" / "siglip-base-patch16-224")


def test_process_prints_hashes_embedding_and_timings(photo: Path, tiny_model) -> None:
    result = json.loads(run_photon("process", photo, "--model", TINY).stdout)
    assert result["path"] == str(photo)
    assert (result["format"], result["width"], result["height"]) == ("JPEG", 600, 400)
    assert len(result["phash"]) == 16 and len(result["content_hash"]) == 32
    vector = result["embedding"]
    assert len(vector) == 128
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-4
    assert set(result["timings_ms"]) == {"decode", "hash", "embed"}
    assert result["model"] == TINY and result["device"] == "cpu"


def test_missing_model_offline_says_how_to_get_it(photo: Path) -> None:
    result = run_photon("process", photo, check=False)  # default model, never downloaded
    assert_one_line_error(result, "HF_HUB_OFFLINE")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["process", "missing.jpg", "--model", TINY], ["missing.jpg"]),
        (["process", "{not_image}", "--model", TINY], ["not an image"]),
        (["process", "{photo}", "--model", "no-such-model"], ["unknown model", TINY]),
        (["process", "{photo}", "--model", TINY, "--device", "tpu"], ["unknown device"]),
        (["process", "{photo}", "--model", TINY, "--device", "cuda"], ["not available"]),
        (["index", "no/such/folder", "--model", TINY], ["no such file or folder"]),
        (["search", "a dog", "--db", "{empty}"], ["no index", "photon index"]),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path: Path, photo: Path, args, words) -> None:
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("shopping list")
    values = {"photo": photo, "not_image": not_image, "empty": tmp_path / "empty-db"}
    result = run_photon(*[a.format(**values) for a in args], check=False)
    assert_one_line_error(result, *words)


def test_bad_option_value_is_a_usage_error(photo: Path) -> None:
    result = run_photon("index", photo.parent, "--workers", "0", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("score", ["2", "-1.5", "nan"])
def test_a_min_score_no_score_can_reach_is_a_usage_error(score: str) -> None:
    result = run_photon("search", "a star", "--min-score", score, check=False)
    assert result.returncode == 2
    assert "--min-score" in result.stderr and "Traceback" not in result.stderr


def test_info_on_a_fresh_home_says_what_to_do() -> None:
    assert "photon index" in run_photon("info").stdout
    details = json.loads(run_photon("info", "--json").stdout)
    assert details["exists"] is False and details["rows"] == 0
