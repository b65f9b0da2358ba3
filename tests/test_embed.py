"""The SigLIP towers on ONNX Runtime, the tokenizer, and the worker pool."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photon_index.embed import ImageEncoder, TextEncoder, text_image_probability
from photon_index.embed.encoder import providers_for
from photon_index.embed.tokenize import TextTokenizer, canonicalize
from photon_index.embed.workers import Embedded, EmbedPool, Failed, WorkerConfig
from photon_index.errors import ModelError, UsageError
from photon_index.models import ModelFiles
from photon_index.models.installed import read_model_dir
from photon_index.synthetic import all_scenes, render, write_pictures


def test_canonicalize_like_siglip() -> None:
    assert canonicalize("  A Dog, on the BEACH!!  at\tdusk. ") == "a dog on the beach at dusk"


def test_ids_end_with_eos_and_pad_with_the_pad_id_to_64(tiny_model: ModelFiles) -> None:
    tokenize = TextTokenizer(tiny_model.tokenizer, tiny_model.config)
    assert (tokenize.eos_id, tokenize.pad_id, tokenize.length) == (1, 1, 64)
    ids = tokenize(["a red circle", "A RED circle!!", "red " * 200])
    assert ids.shape == (3, 64) and ids.dtype == np.int64
    assert (ids[0] == ids[1]).all()  # canonicalised the same
    length = int((ids[0] != 1).sum())
    assert length == 3 and ids[0, length] == 1 and (ids[0, length:] == 1).all()
    assert 0 not in ids[0]  # 0 is <pad> in the vocabulary, but SigLIP pads with </s>
    assert ids[2, -1] == 1 and (ids[2, :-1] != 1).all()  # truncated, </s> kept last


def test_embeddings_are_unit_length_and_batch_independent(tiny_model: ModelFiles) -> None:
    rng = random.Random(1)
    pictures = [render(scene, rng) for scene in rng.sample(all_scenes(), 4)]
    encoder = ImageEncoder(tiny_model, device="cpu", threads=1)
    batch = encoder.encode(pictures)
    assert batch.shape == (4, encoder.dim) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([encoder.encode([p]) for p in pictures])
    assert np.abs(batch - one_by_one).max() < 1e-4
    assert encoder.device == "cpu"


def test_text_finds_the_matching_picture(tiny_model: ModelFiles) -> None:
    """The bundled model must really work: each caption's best picture among 20."""
    rng = random.Random(5)
    scenes = rng.sample(all_scenes(), 20)
    images = ImageEncoder(tiny_model, device="cpu").encode([render(s, rng) for s in scenes])
    texts = TextEncoder(tiny_model, device="cpu").encode([s.caption for s in scenes])
    cosine = texts @ images.T
    top1 = float((cosine.argmax(axis=1) == np.arange(20)).mean())
    assert top1 >= 0.6, f"text->image top-1 {top1:.2f} on 20 scenes"
    probability = text_image_probability(cosine, tiny_model)
    assert probability.diagonal().mean() > np.median(probability)


def test_a_missing_device_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown device"):
        providers_for("tpu")
    with pytest.raises(UsageError, match="not available"):
        providers_for("cuda")
    assert providers_for("cpu") == ["CPUExecutionProvider"]


def test_a_corrupt_model_file_is_caught_before_loading(tiny_model: ModelFiles, tmp_path) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model.dir, folder)
    vision = folder / tiny_model.vision_file
    vision.write_bytes(vision.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="corrupt"):
        ImageEncoder(read_model_dir(folder), device="cpu")


@pytest.fixture
def pictures(tmp_path: Path) -> list[str]:
    return [str(p) for p, _ in write_pictures(tmp_path, 6, seed=3)]


def config(model: ModelFiles) -> WorkerConfig:
    return WorkerConfig(model, "cpu", 1, 10**8)


def drain(pool: EmbedPool) -> list[Embedded | Failed]:
    results: list[Embedded | Failed] = []
    while pool.in_flight:
        results += pool.results(wait=True)
    return results


@pytest.mark.slow
def test_pool_embeds_and_reports_bad_files(tiny_model, pictures, tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with EmbedPool(config(tiny_model), workers=2, timeout=30) as pool:
        pool.submit(pictures[:3])
        pool.submit([*pictures[3:], str(bad)])
        results = drain(pool)
    embedded = [r for r in results if isinstance(r, Embedded)]
    failed = [r for r in results if isinstance(r, Failed)]
    assert sorted(r.path for r in embedded) == sorted(pictures)
    assert [f.path for f in failed] == [str(bad)] and failed[0].error


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_batch_retried(tiny_model, pictures) -> None:
    with EmbedPool(config(tiny_model), workers=1, timeout=30) as pool:
        pool.submit(pictures)
        os.kill(pool._workers[0].process.pid, signal.SIGKILL)
        results = drain(pool)
    assert sorted(r.path for r in results if isinstance(r, Embedded)) == sorted(pictures)


@pytest.mark.slow
def test_an_image_past_its_deadline_fails_alone(tiny_model, pictures, tmp_path) -> None:
    slow = tmp_path / "slow.png"  # 100 Mpx of one colour: a 300 KB file, seconds to inflate
    Image.new("RGB", (10_000, 10_000), (30, 60, 90)).save(slow)
    with EmbedPool(config(tiny_model), workers=1, timeout=0.5) as pool:
        pool.submit([str(slow), pictures[0]])
        results = {r.path: r for r in drain(pool)}
    assert isinstance(results[str(slow)], Failed)
    assert "image_timeout" in results[str(slow)].error
    assert isinstance(results[pictures[0]], Embedded)


@pytest.mark.slow
def test_results_may_be_asked_for_while_handling_results(tiny_model, pictures) -> None:
    """The indexer commits, and so reads the pool again, while it handles results. When
    both workers had answered at once, that inner read emptied the second pipe and the
    outer one then waited on it for ever (a hang seen in CI under load)."""
    with EmbedPool(config(tiny_model), workers=2, timeout=30) as pool:
        pool.submit(pictures[:3])
        pool.submit(pictures[3:])
        deadline = time.monotonic() + 60
        pipes = [w.outbox for w in pool._workers]
        while len(wait(pipes, timeout=0.1)) < 2 and time.monotonic() < deadline:
            pass  # until both answers wait to be read
        handled: list[Embedded | Failed] = []

        def handle() -> None:
            for result in pool.results(wait=True):
                handled.append(result)
                handled.extend(pool.results(wait=False))

        reader = threading.Thread(target=handle, daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert not reader.is_alive(), "reading results blocked"
    assert sorted(r.path for r in handled) == sorted(pictures)
