"""Models on disk: a folder of model files plus the photon.json manifest that records
their checksums and scoring constants, verified before a file is loaded."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from photon_index.errors import ChecksumError, ModelError
from photon_index.models.registry import BUNDLED_DIR, DEFAULT_TEXT, DEFAULT_VISION, ModelSpec
from photon_index.store.atomic import write_atomic

MANIFEST = "photon.json"
SAMPLE_BLOCKS = 16  # blocks read by sampled_hash, spread evenly from start to end
SAMPLE_BLOCK_BYTES = 64 * 1024

# Files this process has verified, with the stamp they had: a second encoder built from
# the same model (a search by text and picture, an index's workers) costs one stat.
_CHECKED: dict[Path, list[int]] = {}


@dataclass(frozen=True)
class ModelFiles:
    """A model folder that passed its checks; what the encoders are built from."""

    name: str
    dir: Path
    vision_file: str
    text_file: str
    logit_scale: float
    logit_bias: float
    checksums: dict[str, str]

    @property
    def vision(self) -> Path:
        return self.verified(self.vision_file)

    @property
    def text(self) -> Path:
        return self.verified(self.text_file)

    @property
    def tokenizer(self) -> Path:
        return self.verified("tokenizer.json")

    @property
    def preprocessor(self) -> Path:
        return self.verified("preprocessor_config.json")

    @property
    def config(self) -> Path:
        return self.verified("config.json")

    def verified(self, relative: str) -> Path:
        """The file's path once its bytes match the manifest's sha256.

        Hashing a 400 MB model on every search would cost a second, so the full sha256
        runs only when the cheap checks disagree with those recorded at its last full
        check: the stamp (size, mtime and ctime; ctime changes with every write through
        the file system, and unlike mtime os.utime can't set it back), then the sampled
        hash (see sampled_hash), once per process. The sampled hash is for changes that
        bypass the file system (bit rot, a bad disk or copy); it reads 1 MiB, so it
        catches a damaged region only when a sampled block touches it: a single flipped
        bit in a 400 MB file is caught with a chance of about 1 in 400, while a
        truncated, zeroed or replaced file always is. The full hash runs again after
        any write, copy or touch of the file (a new stamp)."""
        path = self.dir / relative
        if not path.is_file():
            raise ModelError(
                f"model {self.name} is missing {relative}: run `photon models download {self.name}`"
            )
        expected = self.checksums.get(relative)
        if not expected:
            raise ModelError(f"model {self.name}: {MANIFEST} has no checksum for {relative}")
        stamp = _stamp(path)
        if _CHECKED.get(path) == stamp:
            return path
        meta = _read_manifest(self.dir)
        sample = meta.get("samples", {}).get(relative)
        trusted = meta.get("verified", {}).get(relative) == stamp and sample is not None
        if not (trusted and sampled_hash(path) == sample):
            self._check_sha256(path, relative, expected, stamp)
        _CHECKED[path] = stamp
        return path

    def _check_sha256(self, path: Path, relative: str, expected: str, stamp: list[int]) -> None:
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"{path} is corrupt (sha256 {actual[:12]}…, expected {expected[:12]}…): "
                f"delete it and run `photon models download {self.name}`"
            )
        # Never write into the package: the bundled model is small enough to hash each time.
        if not self.dir.is_relative_to(BUNDLED_DIR):
            _remember_verified(self.dir, relative, stamp, sampled_hash(path))


def model_dir(spec: ModelSpec, models_root: Path) -> Path:
    return BUNDLED_DIR / spec.name if spec.bundled else models_root / spec.name


def read_model_dir(folder: Path) -> ModelFiles:
    meta = _read_manifest(folder)
    if not meta:
        raise ModelError(
            f"{folder} has no {MANIFEST}: copy a whole folder made by `photon models download`, "
            "or put the files in `photon models path NAME` and run `photon models download NAME`"
        )
    try:
        return ModelFiles(
            name=meta["name"],
            dir=folder,
            vision_file=meta.get("vision", DEFAULT_VISION),
            text_file=meta.get("text", DEFAULT_TEXT),
            logit_scale=float(meta["logit_scale"]),
            logit_bias=float(meta["logit_bias"]),
            checksums=dict(meta["files"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(
            f"{folder / MANIFEST} is incomplete ({e}): download the model again"
        ) from e


def write_manifest(folder: Path, spec: ModelSpec, checksums: dict[str, str]) -> None:
    meta = {k: v for k, v in asdict(spec).items() if k != "files"}
    meta["files"] = checksums
    _write_json(folder / MANIFEST, meta)


def recorded_checksums(folder: Path, revision: str | None) -> dict[str, str]:
    """Checksums recorded by an earlier download of the same revision, for files the
    registry publishes none for."""
    meta = _read_manifest(folder)
    return dict(meta.get("files", {})) if meta.get("revision") == revision else {}


def installed_revision(folder: Path) -> str | None:
    return _read_manifest(folder).get("revision")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sampled_hash(path: Path) -> str:
    """A cheap fingerprint: the size and SAMPLE_BLOCKS blocks of SAMPLE_BLOCK_BYTES at
    fixed offsets from the first byte to the last (the whole file when it is smaller),
    hashed. 1 MiB read whatever the file's size: about a millisecond from the page cache."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        for offset in sample_offsets(size):
            f.seek(offset)
            digest.update(f.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()


def sample_offsets(size: int) -> list[int]:
    """Where sampled_hash's blocks start: the first at 0, the last ending at the end."""
    last = max(0, size - SAMPLE_BLOCK_BYTES)
    return sorted({last * i // (SAMPLE_BLOCKS - 1) for i in range(SAMPLE_BLOCKS)})


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {folder / MANIFEST} ({e}): download the model again") from e


def _remember_verified(folder: Path, relative: str, stamp: list[int], sample: str) -> None:
    meta = _read_manifest(folder)
    meta.setdefault("verified", {})[relative] = stamp
    meta.setdefault("samples", {})[relative] = sample
    # A read-only install is simply re-hashed next time.
    with contextlib.suppress(OSError):
        _write_json(folder / MANIFEST, meta)


def _write_json(path: Path, data: dict) -> None:
    # A temp name of this writer's own: the indexer and its workers may record the
    # same model's checks at once, and a shared name let one replace the file with the
    # other's half-written one (read back as empty JSON).
    text = json.dumps(data, indent=2) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))
