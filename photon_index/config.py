"""Settings: the shipped defaults, the user's file, environment variables and flags,
merged in that order of precedence, plus the folders photon keeps its data in."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

from photon_index.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "photon"


@dataclass(frozen=True)
class ModelSettings:
    name: str
    device: str
    threads: int
    endpoint: str


@dataclass(frozen=True)
class IndexSettings:
    workers: int
    batch_size: int
    max_pixels: int
    max_file_size: int
    image_timeout: float
    commit_interval: float
    prune: bool
    include_hidden: bool
    exclude: list[str]


@dataclass(frozen=True)
class SearchSettings:
    limit: int
    ann_threshold: int
    rows_per_partition: int
    refine_factor: int
    nprobes: int
    filtered_exact_rows: int


@dataclass(frozen=True)
class DedupeSettings:
    phash_distance: int
    dhash_distance: int
    near_cosine: float
    similar_cosine: float


@dataclass(frozen=True)
class TagSettings:
    vocabulary: str
    add: list[str]
    thresholds: dict[str, float]
    z: float
    floor: float
    max_per_picture: int
    sample_rows: int
    block_rows: int


@dataclass(frozen=True)
class WatchSettings:
    debounce: float
    quiet: float
    poll: float


@dataclass(frozen=True)
class StorageSettings:
    """Object storage for s3:// pictures and databases (store/location.py)."""

    endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str
    allow_http: bool


@dataclass(frozen=True)
class Paths:
    """Where photon reads and writes; every folder is created on first use."""

    config_file: Path
    db: Path
    models: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Paths:
        home = env.get("PHOTON_HOME")
        if home:
            root = Path(home).expanduser()
            return cls(root / "config.toml", root / "db", root / "models")
        return cls(
            Path(platformdirs.user_config_dir(APP)) / "config.toml",
            Path(platformdirs.user_data_dir(APP)) / "db",
            Path(platformdirs.user_cache_dir(APP)) / "models",
        )


@dataclass(frozen=True)
class Settings:
    model: ModelSettings
    index: IndexSettings
    search: SearchSettings
    dedupe: DedupeSettings
    tags: TagSettings
    watch: WatchSettings
    storage: StorageSettings
    paths: Paths

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults < user config file < PHOTON_<SECTION>_<KEY> environment variables."""
        env = os.environ if env is None else env
        paths = Paths.from_env(env)
        merged = _read_toml(resources.files("photon_index") / "configs" / "default.toml")
        if paths.config_file.is_file():
            _merge(merged, _read_toml(paths.config_file), str(paths.config_file))
        _merge(merged, _from_env(merged, env), "the environment")
        built = {name: _build(kind, merged[name], name) for name, kind in _SECTIONS.items()}
        return cls(paths=paths, **built)

    def with_overrides(self, section: str, **values: Any) -> Settings:
        """Apply command-line flags; a value of None means the flag was not given."""
        given = {k: v for k, v in values.items() if v is not None}
        for key, value in given.items():
            _check_range(section, key, value)
        return replace(self, **{section: replace(getattr(self, section), **given)})


_SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "index": IndexSettings,
    "search": SearchSettings,
    "dedupe": DedupeSettings,
    "tags": TagSettings,
    "watch": WatchSettings,
    "storage": StorageSettings,
}


def _read_toml(source: Any) -> dict[str, Any]:
    try:
        return tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {source}: {e}") from e


def _merge(base: dict[str, Any], extra: dict[str, Any], origin: str) -> None:
    for section, values in extra.items():
        if section not in base or not isinstance(values, dict):
            raise ConfigError(f"unknown config section [{section}] in {origin}")
        for key, value in values.items():
            if key not in base[section]:
                raise ConfigError(f"unknown config key {section}.{key} in {origin}")
            base[section][key] = value


def _from_env(defaults: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, values in defaults.items():
        for key, default in values.items():
            name = f"PHOTON_{section}_{key}".upper()
            if name in env:
                out.setdefault(section, {})[key] = _parse(env[name], default, name)
    return out


def _parse(text: str, like: Any, name: str) -> Any:
    """Read an environment string as the type of the default it replaces."""
    try:
        if isinstance(like, bool):
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        if isinstance(like, list):
            return [part for part in text.split(",") if part]
        return type(like)(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a valid {type(like).__name__}") from None


# Most results a search returns: beyond this a "top k" is a table dump, and Lance's
# k * refine_factor candidates would no longer fit in memory.
MAX_RESULTS = 10_000

# The allowed values of every numeric setting, inclusive. Outside them a setting fails
# at load, naming the key, instead of later as a hang (workers = -1), a traceback
# (limit = 0, nprobes = 0) or an engine error far from the cause.
RANGES: dict[str, tuple[float, float]] = {
    "model.threads": (0, 1024),
    "index.workers": (0, 1024),
    "index.batch_size": (1, 4096),
    "index.max_pixels": (1, 10**12),
    "index.max_file_size": (1, 2**60),
    "index.image_timeout": (0.1, 86_400.0),
    "index.commit_interval": (0.0, 86_400.0),
    "search.limit": (1, MAX_RESULTS),
    "search.ann_threshold": (1, 2**60),
    "search.rows_per_partition": (1, 2**60),
    "search.refine_factor": (1, 1000),
    "search.nprobes": (1, 100_000),
    "search.filtered_exact_rows": (0, 10**9),
    "dedupe.phash_distance": (0, 63),
    "dedupe.dhash_distance": (0, 63),
    "dedupe.near_cosine": (-1.0, 1.0),
    "dedupe.similar_cosine": (-1.0, 1.0),
    "tags.z": (0.0, 100.0),
    "tags.floor": (1e-9, 0.999),
    "tags.max_per_picture": (1, 1000),
    "tags.sample_rows": (100, 10**8),
    "tags.block_rows": (1, 10**6),
    "watch.debounce": (0.01, 3600.0),
    "watch.quiet": (0.01, 60.0),
    "watch.poll": (0.1, 3600.0),
}

_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "whole number"),
    "float": ((int, float), "number"),
    "bool": ((bool,), "true or false"),
    "str": ((str,), "string"),
    "list[str]": ((list,), "list of strings"),
    "dict[str, float]": ((dict,), "table of numbers"),
}


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    kwargs = {}
    for f in fields(cls):
        value = values[f.name]
        types, name = _KINDS[str(f.type)]
        # bool is an int to Python, but `workers = true` is a mistake, not 1.
        if not isinstance(value, types) or (isinstance(value, bool) and f.type != "bool"):
            raise ConfigError(f"config key {section}.{f.name} must be a {name}, got {value!r}")
        kwargs[f.name] = float(value) if f.type == "float" else value
        _check_range(section, f.name, kwargs[f.name])
    return cls(**kwargs)


def _check_range(section: str, key: str, value: Any) -> None:
    bounds = RANGES.get(f"{section}.{key}")
    # `not low <= value <= high` also refuses nan, which TOML allows.
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        low, high = bounds
        env = f"PHOTON_{section}_{key}".upper()
        raise ConfigError(
            f"config key {section}.{key} ({env}) = {value!r} is out of range: "
            f"it must be {low:,} to {high:,}"
        )
