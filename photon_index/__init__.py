"""photon: a local-first AI photo library.

    from photon_index import Index
    report = Index().update(["~/Pictures"])

Names are imported on first use, so `import photon_index` stays cheap for the CLI."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Index": "photon_index.index",
    "IndexReport": "photon_index.ingest",
    "LibraryStatus": "photon_index.index",
    "RunProgress": "photon_index.ingest",
    "Settings": "photon_index.config",
    "PhotonError": "photon_index.errors",
    "NotFoundError": "photon_index.errors",
    "FileChangedError": "photon_index.errors",
    "Filters": "photon_index.query.search",
    "Hit": "photon_index.query.search",
    "SearchResults": "photon_index.query.search",
    "DuplicateGroup": "photon_index.query.dedupe",
    "Embeddings": "photon_index.embed.embeddings",  # not via embed/: workers need no pyarrow
    "ImageRecord": "photon_index.store.schema",
    "image_id": "photon_index.store.schema",
    "ImageEncoder": "photon_index.embed",
    "TextEncoder": "photon_index.embed",
    "load_model": "photon_index.models",
    "process_image": "photon_index.process",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'photon_index' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
