"""The two SigLIP towers on ONNX Runtime: pictures and texts to L2-normalised vectors in
one shared space, and the model's own scoring of a text against a picture."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from photon_index.embed.preprocess import ImagePreprocessor
from photon_index.embed.tokenize import TextTokenizer
from photon_index.errors import ModelError, UsageError
from photon_index.models import ModelFiles

DEVICES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}
_AUTO_ORDER = ("cuda", "coreml", "directml", "cpu")


def providers_for(device: str) -> list[str]:
    """The execution providers to ask for, best first; CPU is always the last resort."""
    available = ort.get_available_providers()
    if device == "auto":
        wanted = [DEVICES[d] for d in _AUTO_ORDER if DEVICES[d] in available]
        return wanted or ["CPUExecutionProvider"]
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}: use auto, {', '.join(DEVICES)}")
    if DEVICES[device] not in available:
        have = ", ".join(name for name, p in DEVICES.items() if p in available)
        raise UsageError(
            f"device {device!r} is not available in this onnxruntime build (available: {have}); "
            "install the matching onnxruntime package or use --device auto"
        )
    return list(dict.fromkeys([DEVICES[device], "CPUExecutionProvider"]))


def preferred_device(device: str) -> str:
    """The device a session would run on, without loading a model."""
    first = providers_for(device)[0]
    return next(name for name, p in DEVICES.items() if p == first)


def device_name(session: ort.InferenceSession) -> str:
    active = session.get_providers()[0]
    return next((name for name, p in DEVICES.items() if p == active), active)


def open_session(
    path: Path, device: str, threads: int, model_name: str | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers = providers_for(device)  # outside the try: a bad device is a UsageError
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:
        # ONNX Runtime raises a class of its own per failure (InvalidProtobuf, Fail,
        # NoSuchFile, InvalidGraph...), none a common base but Exception: a file that
        # passed its checksum and still won't load is damaged or not a SigLIP export.
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fix = f"photon models download {model_name}" if model_name else "photon models download"
        raise ModelError(
            f"cannot load {path} ({type(e).__name__}: {first_line[:200]}): "
            f"delete it and run `{fix}`"
        ) from e


class _Tower:
    """One ONNX tower whose pooler_output is the embedding."""

    def __init__(
        self, path: Path, input_name: str, device: str, threads: int, model_name: str
    ) -> None:
        self.session = open_session(path, device, threads, model_name)
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != [input_name]:
            raise ModelError(f"{path} takes inputs {inputs}, expected only {input_name!r}")
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "pooler_output" not in outputs:
            raise ModelError(f"{path} has no pooler_output: it is not a SigLIP tower export")
        self.dim = int(outputs["pooler_output"].shape[-1])
        self.input_name = input_name
        self.device = device_name(self.session)

    def run(self, batch: np.ndarray) -> np.ndarray:
        (pooled,) = self.session.run(["pooler_output"], {self.input_name: batch})
        return normalize(pooled.astype(np.float32, copy=False))


class ImageEncoder(_Tower):
    def __init__(self, model: ModelFiles, *, device: str = "auto", threads: int = 0) -> None:
        self.preprocess = ImagePreprocessor.from_file(model.preprocessor)
        super().__init__(model.vision, "pixel_values", device, threads, model.name)

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """[N, D] float32, unit length."""
        return self.run(self.preprocess(images))


class TextEncoder(_Tower):
    def __init__(self, model: ModelFiles, *, device: str = "auto", threads: int = 0) -> None:
        self.tokenize = TextTokenizer(model.tokenizer, model.config)
        super().__init__(model.text, "input_ids", device, threads, model.name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N, D] float32, unit length."""
        return self.run(self.tokenize(texts))


class Encoders:
    """One model's two towers, each built on first use and then kept, so a long-lived
    Index (the web server) pays an ONNX session's start-up once, not on every query.
    ONNX Runtime sessions and tokenizers may run from several threads at once; the lock
    only keeps two threads from building the same tower twice."""

    def __init__(self, model: ModelFiles, *, device: str, threads: int = 0) -> None:
        self.model = model
        self.device = device
        self.threads = threads
        self._lock = threading.Lock()
        self._text: TextEncoder | None = None
        self._image: ImageEncoder | None = None

    def text(self) -> TextEncoder:
        with self._lock:
            if self._text is None:
                self._text = TextEncoder(self.model, device=self.device, threads=self.threads)
            return self._text

    def image(self) -> ImageEncoder:
        with self._lock:
            if self._image is None:
                self._image = ImageEncoder(self.model, device=self.device, threads=self.threads)
            return self._image


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def text_image_probability(cosine: np.ndarray, model: ModelFiles) -> np.ndarray:
    """SigLIP's calibrated match probability: sigmoid(scale * cos + bias)."""
    return 1.0 / (1.0 + np.exp(-(model.logit_scale * cosine + model.logit_bias)))
