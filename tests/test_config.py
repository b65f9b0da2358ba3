"""Settings precedence: shipped defaults < user file < environment < flags."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import run_photon

from photon_index.config import RANGES, Settings
from photon_index.errors import ConfigError


def test_defaults_are_complete_and_paths_follow_photon_home(isolated: Path) -> None:
    settings = Settings.load()
    assert settings.model.name == "siglip-base-patch16-224"
    assert settings.index.batch_size > 0 and settings.index.prune is True
    assert settings.paths.db == isolated / "db"
    assert settings.paths.models == isolated / "models"
    assert settings.paths.config_file == isolated / "config.toml"


def test_user_file_then_environment_then_flags(isolated: Path, monkeypatch) -> None:
    (isolated / "config.toml").write_text("[index]\nworkers = 3\nbatch_size = 5\n")
    settings = Settings.load()
    assert (settings.index.workers, settings.index.batch_size) == (3, 5)

    monkeypatch.setenv("PHOTON_INDEX_WORKERS", "4")
    monkeypatch.setenv("PHOTON_INDEX_PRUNE", "false")
    monkeypatch.setenv("PHOTON_INDEX_EXCLUDE", "*.png,raw/*")
    settings = Settings.load()
    assert (settings.index.workers, settings.index.batch_size) == (4, 5)
    assert settings.index.prune is False
    assert settings.index.exclude == ["*.png", "raw/*"]

    flagged = settings.with_overrides("index", workers=1, batch_size=None)
    assert (flagged.index.workers, flagged.index.batch_size) == (1, 5)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[index]\nworkers = 'many'\n", "index.workers must be a whole number"),
        ("[index]\nwrokers = 2\n", "unknown config key index.wrokers"),
        ("[nope]\nx = 1\n", "unknown config section [nope]"),
        ("[index\n", "cannot read config file"),
        ("[index]\nprune = 1\n", "index.prune must be a true or false"),
        ("[index]\nworkers = true\n", "index.workers must be a whole number"),
    ],
)
def test_bad_user_file_is_a_clear_error(isolated: Path, text: str, words: str) -> None:
    (isolated / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        Settings.load()


def test_bad_environment_value_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("PHOTON_INDEX_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="PHOTON_INDEX_BATCH_SIZE='lots' is not a valid int"):
        Settings.load()


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PHOTON_INDEX_WORKERS", "-1", "index.workers (PHOTON_INDEX_WORKERS) = -1 is out of range"),
        ("PHOTON_SEARCH_LIMIT", "0", "search.limit (PHOTON_SEARCH_LIMIT) = 0 is out of range"),
        ("PHOTON_SEARCH_LIMIT", "99999999999", "must be 1 to 10,000"),
        ("PHOTON_SEARCH_NPROBES", "0", "search.nprobes (PHOTON_SEARCH_NPROBES) = 0"),
        ("PHOTON_SEARCH_REFINE_FACTOR", "0", "search.refine_factor"),
        ("PHOTON_INDEX_BATCH_SIZE", "0", "index.batch_size"),
        ("PHOTON_INDEX_IMAGE_TIMEOUT", "-5", "index.image_timeout"),
        ("PHOTON_INDEX_IMAGE_TIMEOUT", "nan", "index.image_timeout"),
        ("PHOTON_DEDUPE_PHASH_DISTANCE", "64", "must be 0 to 63"),
        ("PHOTON_DEDUPE_SIMILAR_COSINE", "1.5", "dedupe.similar_cosine"),
    ],
)
def test_out_of_range_settings_are_refused(monkeypatch, name: str, value: str, words: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(words)):
        Settings.load()


def test_out_of_range_in_the_user_file_and_flags(isolated: Path) -> None:
    (isolated / "config.toml").write_text("[model]\nthreads = -2\n")
    with pytest.raises(ConfigError, match=re.escape("model.threads (PHOTON_MODEL_THREADS) = -2")):
        Settings.load()
    (isolated / "config.toml").write_text("")
    with pytest.raises(ConfigError, match=r"search\.nprobes"):
        Settings.load().with_overrides("search", nprobes=0)


def test_every_numeric_setting_has_a_declared_range() -> None:
    settings = Settings.load()
    for section in ("model", "index", "search", "dedupe"):
        for f in fields(getattr(settings, section)):
            if f.type in ("int", "float"):
                assert f"{section}.{f.name}" in RANGES, f"{section}.{f.name} has no range"
                low, high = RANGES[f"{section}.{f.name}"]
                assert low <= getattr(getattr(settings, section), f.name) <= high


def test_out_of_range_setting_is_one_line_exit_2(monkeypatch) -> None:
    monkeypatch.setenv("PHOTON_INDEX_WORKERS", "-1")
    result = run_photon("info", check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "index.workers" in result.stderr
