"""The demo library the web app's tests run on, and what each of its pictures shows."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from photon_index import Index
from photon_index.config import Settings
from photon_index.demo import PICTURES, SEED, run_demo
from photon_index.synthetic import Scene, write_pictures


@dataclass(frozen=True)
class DemoLibrary:
    root: Path
    pictures: Path
    db: Path
    settings: Settings
    scenes: dict[str, Scene]  # path of a drawn picture -> what it shows

    def index(self) -> Index:
        return Index(self.db, settings=self.settings)

    def right_caption(self) -> tuple[str, str]:
        """A caption and the picture drawn from it that the tiny model ranks first (the
        web app shows the library's ranking; the model's recall is tested elsewhere)."""
        index = self.index()
        for path, scene in sorted(self.scenes.items()):
            if index.search(scene.caption, limit=1).hits[0].path == path:
                return scene.caption, path
        raise AssertionError("the tiny model ranks no drawn picture first")


def make_demo(root: Path) -> DemoLibrary:
    """`photon demo` in root: 60 drawn pictures with EXIF dates and cameras, two exact
    and two near copies, indexed with the bundled tiny model."""
    settings = Settings.load({"PHOTON_HOME": str(root / "home"), "HF_HUB_OFFLINE": "1"})
    for _ in run_demo(root, settings):
        pass
    # The demo draws the same pictures every time: draw them again to learn their scenes.
    scratch = root / "scratch"
    drawn = write_pictures(scratch, PICTURES, seed=SEED)
    shutil.rmtree(scratch)
    pictures = root / "pictures"
    scenes = {str(pictures / path.name): scene for path, scene in drawn}
    return DemoLibrary(root, pictures, root / "db", settings, scenes)
