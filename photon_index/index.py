"""`Index`: photon's library API. One object per database; the CLI is a thin layer over it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from photon_index.config import Settings
from photon_index.errors import UsageError
from photon_index.ingest import IndexReport, Ingest
from photon_index.models import ModelFiles, load_model
from photon_index.models.download import resolve_endpoint
from photon_index.models.installed import folder_size
from photon_index.store.table import ImageTable


@dataclass(frozen=True)
class IndexInfo:
    db: str
    exists: bool
    model: str | None
    rows: int
    size_bytes: int
    version: int | None
    dim: int | None
    indices: list[str]


class Index:
    """The photo index at `db` (default: the user data dir, or $PHOTON_HOME/db)."""

    def __init__(self, db: Path | str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.db_path = Path(db).expanduser().absolute() if db else self.settings.paths.db

    def table(self) -> ImageTable | None:
        return ImageTable.open(self.db_path)

    def load_model(self, ref: str | None = None, *, progress: bool = False) -> ModelFiles:
        """The model named by ref, else the one this index was built with, else the default."""
        table = self.table()
        ref = ref or (table.model_ref if table else self.settings.model.name)
        return load_model(
            ref,
            self.settings.paths.models,
            endpoint=resolve_endpoint(self.settings.model.endpoint),
            progress=progress,
        )

    def update(
        self, roots: Sequence[Path | str], *, model: str | None = None, progress: bool = False
    ) -> IndexReport:
        """Bring the index up to date with the pictures under roots."""
        paths = [Path(r).expanduser() for r in roots]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise UsageError(f"no such file or folder: {', '.join(missing)}")
        loaded = self.load_model(model, progress=progress)
        table = self.table()
        if table is not None and table.model != loaded.name:
            raise UsageError(
                f"the index at {self.db_path} was built with model {table.model}; "
                f"index with --model {table.model_ref}, or use --db DIR for a separate "
                f"index with {loaded.name}"
            )
        if table is None:
            dim = _vision_dim(loaded)
            table = ImageTable.create(self.db_path, dim, loaded.name, model or loaded.name)
        return Ingest(table, loaded, self.settings, progress=progress).run(paths)

    def info(self) -> IndexInfo:
        table = self.table()
        if table is None:
            return IndexInfo(str(self.db_path), False, None, 0, 0, None, None, [])
        return IndexInfo(
            db=str(self.db_path),
            exists=True,
            model=table.model,
            rows=table.count(),
            size_bytes=folder_size(self.db_path),
            version=table.table.version,
            dim=table.dim,
            indices=[str(index.name) for index in table.table.list_indices()],
        )


def _vision_dim(model: ModelFiles) -> int:
    from photon_index.embed.encoder import open_session

    session = open_session(model.vision, "cpu", 1)
    (pooled,) = [o for o in session.get_outputs() if o.name == "pooler_output"]
    return int(pooled.shape[-1])
