"""Settings precedence: shipped defaults < user file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from photon_index.config import Settings
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
