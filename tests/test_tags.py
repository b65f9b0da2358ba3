"""Zero-shot tags: vocabulary files, the label-free rule, the text-embedding cache,
tagging during `photon index` and from stored embeddings, `photon tags` and
`photon search --tag`, and precision/recall on freshly drawn tiny-world pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY, run_photon

from photon_index import Index
from photon_index.config import Settings
from photon_index.errors import ConfigError
from photon_index.models import ModelFiles
from photon_index.synthetic import write_pictures
from photon_index.tags.scoring import (
    Cutoffs,
    Rule,
    assign,
    cache_path,
    cutoffs,
    logit,
    statistics,
    tag_embeddings,
)
from photon_index.tags.vocabulary import TEMPLATES, load_vocabulary, parse_vocabulary


def test_synonyms_merge_and_thresholds_parse() -> None:
    vocabulary = parse_vocabulary(
        "# comment\nbeach, seaside\nshore, Seaside @ 0.2\ndog\nreceipt @ 0.05\n", "test"
    )
    assert vocabulary.names == ["beach", "dog", "receipt"]
    beach = vocabulary.find("SHORE")
    assert beach is not None and beach.names == ("beach", "seaside", "shore")
    assert beach.threshold == 0.2
    assert vocabulary.tags[2].threshold == 0.05
    assert vocabulary.templates == TEMPLATES
    assert "a photo of dog." in vocabulary.prompts(vocabulary.tags[1])


def test_a_bad_line_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="test:2"):
        parse_vocabulary("dog\ncat @ 2\n", "test")
    with pytest.raises(ConfigError, match="template"):
        parse_vocabulary("template: a photo\ndog\n", "test")


def test_user_vocabulary_extra_tags_and_overrides(tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("template: a photo of {}\nbeach\ndog, puppy\n")
    vocabulary = load_vocabulary(tmp_path, str(mine), ["cat, kitten"], {"puppy": 0.3})
    assert vocabulary.names == ["beach", "dog", "cat"]
    assert vocabulary.tags[1].threshold == 0.3
    assert vocabulary.templates == ("a photo of {}",)
    with pytest.raises(ConfigError, match="horse"):
        load_vocabulary(tmp_path, str(mine), [], {"horse": 0.3})


def test_default_and_model_vocabularies_load(tiny_model: ModelFiles, tmp_path: Path) -> None:
    assert "red background" in load_vocabulary(tiny_model.dir).names
    default = load_vocabulary(tmp_path)
    assert len(default.tags) >= 500 and default.find("beach") is not None


def test_rule_finds_the_outliers_of_each_tag() -> None:
    rng = np.random.default_rng(0)
    sample = rng.normal(-10.0, 1.0, (1000, 2)).astype(np.float32)
    sample[:50, 0] = -1.0  # 5 % show tag 0, clearly above its usual logits
    sample[:, 1] += 6.0  # tag 1 scores everything higher, but no picture stands out
    vocabulary = parse_vocabulary("a\nb @ 0.5\n", "test")
    rule = Rule(z=3.0, floor=0.001, max_per_picture=1)
    cuts = cutoffs(*statistics(sample.T.copy()), vocabulary, rule)
    assert -8.0 < cuts.thresholds[0] < -2.0
    assert cuts.thresholds[1] == pytest.approx(logit(0.5))
    picked = assign(sample[:60], cuts, 1)
    assert all(picked.of(i)[0] == [0] for i in range(50))
    assert not any(picked.of(i)[0] for i in range(50, 60))
    assert picked.of(0)[1] == [pytest.approx(-1.0)]


def test_text_embeddings_are_cached_by_vocabulary_and_model(
    tiny_model: ModelFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from photon_index.embed import TextEncoder

    encoder = TextEncoder(tiny_model, device="cpu")
    vocabulary = parse_vocabulary("template: {}\nred\nblue background\n", "test")
    first = tag_embeddings(vocabulary, encoder, tiny_model, tmp_path)
    assert cache_path(vocabulary, tiny_model, tmp_path).is_file()
    calls: list[int] = []
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(len(texts)) or [])
    again = tag_embeddings(vocabulary, encoder, tiny_model, tmp_path)
    assert np.array_equal(first, again) and not calls  # second run: from the cache
    changed = parse_vocabulary("template: {}\nred\ngreen background\n", "test")
    assert cache_path(changed, tiny_model, tmp_path) != cache_path(vocabulary, tiny_model, tmp_path)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any], str]:
    """40 drawn pictures indexed by the CLI, 8 to a batch: (pictures, db, path -> scene,
    the index run's summary)."""
    root = tmp_path_factory.mktemp("tagged")
    drawn = write_pictures(root / "pictures", 40, seed=5)
    env = {"PHOTON_HOME": str(root / "home")}
    args = ("index", root / "pictures", "--db", root / "db", "--model", TINY)
    out = run_photon(*args, "--batch-size", "8", env=env).stdout
    return root / "pictures", root / "db", {str(p): s for p, s in drawn}, out


@pytest.mark.slow
def test_index_tags_new_pictures_and_tags_lists_them(library, tmp_path: Path) -> None:
    pictures, db, _, out = library
    assert "40 tagged" in out
    counts = json.loads(run_photon("tags", "--db", db, "--json").stdout)
    assert sum(c["count"] for c in counts) >= 40
    # One more picture: only it is tagged at the end of the next run.
    write_pictures(tmp_path / "more", 1, seed=99)[0][0].rename(pictures / "extra.jpg")
    assert "1 tagged" in run_photon("index", pictures, "--db", db, "--model", TINY).stdout
    recomputed = run_photon("tags", "--recompute", "--db", db).stdout
    assert recomputed.startswith("41 pictures tagged")
    (pictures / "extra.jpg").unlink()
    run_photon("index", pictures, "--db", db, "--model", TINY)


@pytest.mark.slow
def test_tags_of_a_picture_indexed_or_not(library, tmp_path: Path) -> None:
    _, db, scenes, _ = library
    path, scene = next(iter(scenes.items()))
    shown = json.loads(run_photon("tags", path, "--db", db, "--json").stdout)
    assert f"{scene.background} background" in [t["tag"] for t in shown["tags"]]
    (new, new_scene), *_ = write_pictures(tmp_path / "new", 1, seed=123)
    text = run_photon("tags", new, "--db", db).stdout
    assert f"{new_scene.background} background" in text
    assert all(0 < float(line.split()[0]) < 1 for line in text.splitlines())


@pytest.mark.slow
def test_search_by_tags_with_text_filters_and_json(library) -> None:
    pictures, db, scenes, _ = library
    path, scene = next(iter(scenes.items()))
    colour, background = scene.colour, f"{scene.background} background"
    out = run_photon("search", "--tag", background, "--tag", colour, "--db", db, "--json")
    hits = json.loads(out.stdout)["hits"]
    assert path in [h["path"] for h in hits]
    index = Index(db, settings=Settings.load())
    tagged = {h["path"] for h in hits}
    for hit in tagged:  # exact: every hit has both tags stored
        names = [t.tag for t in index.tags_of(hit)]
        assert colour in names and background in names
    text = run_photon("search", "a star", "--tag", background, "--db", db, "--json").stdout
    with_text = json.loads(text)["hits"]
    assert with_text and all(
        background in [t.tag for t in index.tags_of(h["path"])] for h in with_text
    )
    inside = run_photon("search", "--tag", background, "--in", pictures, "--db", db, "--json")
    assert {h["path"] for h in json.loads(inside.stdout)["hits"]} >= {path}
    dated = run_photon("search", "--tag", background, "--after", "2262-01-02", "--db", db)
    assert "no matches" in dated.stderr
    unknown = run_photon("search", "--tag", "zebra", "--db", db, check=False)
    assert unknown.returncode == 2 and "zebra" in unknown.stderr


@pytest.mark.slow
def test_precision_and_recall_on_fresh_pictures(tmp_path: Path) -> None:
    """Thresholds by the label-free rule (chosen on another seed): both >= 0.9."""
    drawn = write_pictures(tmp_path / "pictures", 200, seed=2027)
    index = Index(tmp_path / "db", settings=Settings.load())
    index.update([tmp_path / "pictures"], model=TINY)
    from photon_index.store.tags import TagStore

    data = TagStore(tmp_path / "db").read(["path", "tags"]).to_pydict()
    got = dict(zip(data["path"], data["tags"], strict=True))
    right = given = truths = 0
    for path, scene in drawn:
        truth = {scene.colour, f"{scene.background} background"}
        tags = set(got[str(path)])
        right += len(truth & tags)
        given += len(tags)
        truths += len(truth)
    assert right / given >= 0.9 and right / truths >= 0.9, (right / given, right / truths)


def test_assign_keeps_the_best_margins_of_each_picture() -> None:
    """The vectorised assign() against the rule written out plainly."""
    rng = np.random.default_rng(3)
    block = rng.normal(-8.0, 3.0, (300, 40)).astype(np.float32)
    cuts = Cutoffs(
        rng.normal(-5.0, 1.0, 40).astype(np.float32), rng.uniform(0.5, 2.0, 40).astype(np.float32)
    )
    picked = assign(block, cuts, 4)
    for i, row in enumerate(block):
        passing = [t for t in range(40) if row[t] >= cuts.thresholds[t]]
        best = sorted(passing, key=lambda t: -(row[t] - cuts.thresholds[t]) / cuts.spreads[t])
        assert picked.of(i) == (best[:4], [float(row[t]) for t in best[:4]])


def test_a_video_counts_once_for_a_tag_however_many_frames_have_it(tmp_path: Path) -> None:
    import pyarrow as pa

    from photon_index.store.tags import TagStore, tag_rows

    paths = ["a.jpg", "v.mp4#t=0.0", "v.mp4#t=5.0", "gone.jpg"]
    rows = tag_rows(
        pa.chunked_array([pa.array(paths)]),
        pa.chunked_array([pa.array(["h1", "h2", "h2", "h3"])]),
        np.array([0, 1, 3, 4, 5]),
        pa.array(["beach", "beach", "dog", "beach", "beach"]),
        np.zeros(5, np.float32),
    )
    (tmp_path / "db").mkdir()
    store = TagStore(tmp_path / "db")
    store.update([], rows)
    assert store.counts(pa.array(paths[:3])) == {"beach": 2, "dog": 1}
