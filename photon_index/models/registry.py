"""The models photon knows by name: downloadable ones from registry.toml and the ones
bundled inside the package."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from photon_index.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUNDLED_DIR = Path(str(resources.files("photon_index") / "models" / "bundled"))
DEFAULT_VISION = "onnx/vision_model.onnx"
DEFAULT_TEXT = "onnx/text_model.onnx"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    files: dict[str, str]  # relative path -> sha256 ("" when not published)
    vision: str
    text: str
    logit_scale: float
    logit_bias: float
    repo: str | None = None  # None for a model bundled in the package
    revision: str | None = None

    @property
    def bundled(self) -> bool:
        return self.repo is None


@cache
def known_models() -> dict[str, ModelSpec]:
    text = (resources.files("photon_index") / "models" / "registry.toml").read_text("utf-8")
    specs = [ModelSpec(name=name, **entry) for name, entry in tomllib.loads(text).items()]
    specs += [_bundled_spec(p) for p in sorted(BUNDLED_DIR.glob("*/photon.json"))]
    return {spec.name: spec for spec in specs}


def get_spec(name: str) -> ModelSpec:
    try:
        return known_models()[name]
    except KeyError:
        names = ", ".join(known_models())
        raise ModelError(
            f"unknown model {name!r}: use one of {names}, or a folder made by "
            "`photon models download`"
        ) from None


def _bundled_spec(manifest: Path) -> ModelSpec:
    meta = json.loads(manifest.read_text("utf-8"))
    return ModelSpec(
        name=meta["name"],
        description=meta.get("description", "bundled with photon"),
        files=meta["files"],
        vision=meta.get("vision", DEFAULT_VISION),
        text=meta.get("text", DEFAULT_TEXT),
        logit_scale=meta["logit_scale"],
        logit_bias=meta["logit_bias"],
    )
