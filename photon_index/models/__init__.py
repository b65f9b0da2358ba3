"""Model management: which models exist, where they live, getting them onto disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from photon_index.errors import ModelError
from photon_index.models.download import download_model
from photon_index.models.installed import (
    ModelFiles,
    folder_size,
    installed_revision,
    model_dir,
    read_model_dir,
)
from photon_index.models.registry import ModelSpec, get_spec, known_models

__all__ = [
    "ModelFiles",
    "ModelSpec",
    "ModelStatus",
    "download_model",
    "get_spec",
    "known_models",
    "list_models",
    "load_model",
    "model_path",
]


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    installed: bool
    bundled: bool
    size_bytes: int
    path: str


def model_path(name: str, models_root: Path) -> Path:
    return model_dir(get_spec(name), models_root)


def load_model(
    ref: str, models_root: Path, *, endpoint: str, download: bool = True, progress: bool = True
) -> ModelFiles:
    """A registry name (downloaded on first use) or a folder laid out like a download."""
    if ref not in known_models():
        if Path(ref).expanduser().is_dir():
            return read_model_dir(Path(ref).expanduser().resolve())
        get_spec(ref)  # raises the unknown-model error listing the names
    spec = get_spec(ref)
    folder = model_dir(spec, models_root)
    if not is_installed(spec, folder):
        if not download:
            raise ModelError(f"model {ref} is not installed: run `photon models download {ref}`")
        download_model(spec, folder, endpoint=endpoint, progress=progress)
    return read_model_dir(folder)


def is_installed(spec: ModelSpec, folder: Path) -> bool:
    """Every file present, from the revision the registry names."""
    if spec.bundled:
        return folder.is_dir()
    return installed_revision(folder) == spec.revision and all(
        (folder / f).is_file() for f in spec.files
    )


def list_models(models_root: Path) -> list[ModelStatus]:
    statuses = []
    for spec in known_models().values():
        folder = model_dir(spec, models_root)
        installed = is_installed(spec, folder)
        statuses.append(
            ModelStatus(
                name=spec.name,
                description=spec.description,
                installed=installed,
                bundled=spec.bundled,
                size_bytes=folder_size(folder) if folder.is_dir() else 0,
                path=str(folder),
            )
        )
    return statuses
