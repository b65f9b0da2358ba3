"""Procedural pictures with exact captions, for tests and the offline demo.

Every picture is one coloured shape on a plain background, e.g. "a red circle on a
blue background". The bundled model ``siglip-tiny-shapes`` was trained on exactly
this vocabulary, so search quality can be measured without network or real photos.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 220, 40),
    "green": (40, 165, 60),
    "blue": (35, 75, 215),
    "purple": (125, 45, 175),
    "pink": (245, 135, 190),
    "brown": (115, 70, 35),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}

SHAPES = ("circle", "ring", "square", "diamond", "triangle", "hexagon", "star", "cross")

_SUPERSAMPLE = 2  # PIL draws without anti-aliasing; drawing large and shrinking fakes it


def _regular(n: int, phase: float, radii: tuple[float, ...] = (1.0,)) -> list[tuple[float, float]]:
    """Unit polygon with n*len(radii) corners, alternating radii (for stars)."""
    k = n * len(radii)
    return [
        (
            radii[i % len(radii)] * math.cos(phase + 2 * math.pi * i / k),
            radii[i % len(radii)] * math.sin(phase + 2 * math.pi * i / k),
        )
        for i in range(k)
    ]


_CROSS = [(-1, -3), (1, -3), (1, -1), (3, -1), (3, 1), (1, 1)]
_CROSS += [(-x, -y) for x, y in _CROSS]

# Outlines in unit coordinates (y down); circle and ring are drawn as ellipses instead.
_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": _regular(4, math.pi / 4),
    "diamond": [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
    "triangle": _regular(3, -math.pi / 2),
    "hexagon": _regular(6, 0.0),
    "star": _regular(5, -math.pi / 2, (1.0, 0.42)),
    "cross": [(x / 3, y / 3) for x, y in _CROSS],
}


@dataclass(frozen=True)
class Scene:
    """One shape of one colour on a plain background of another colour."""

    shape: str
    colour: str
    background: str

    @property
    def caption(self) -> str:
        """E.g. "an orange star on a white background"."""
        return f"{_noun(self.colour)} {self.shape} on {_noun(self.background)} background"


def _noun(colour: str) -> str:
    return f"an {colour}" if colour[0] in "aeiou" else f"a {colour}"


def all_scenes() -> list[Scene]:
    """Every distinct scene, in a fixed order."""
    return [
        Scene(shape, colour, background)
        for shape, colour, background in itertools.product(SHAPES, COLOURS, COLOURS)
        if colour != background
    ]


def random_scene(rng: random.Random) -> Scene:
    """A uniformly random scene."""
    colour, background = rng.sample(list(COLOURS), 2)
    return Scene(rng.choice(SHAPES), colour, background)


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    # A different shade each time, so a colour name covers a range, not one RGB value;
    # mostly lighter/darker, barely a hue shift, so gray stays gray.
    light = rng.randint(-18, 18)
    r, g, b = (min(255, max(0, c + light + rng.randint(-5, 5))) for c in rgb)
    return r, g, b


def render(scene: Scene, rng: random.Random, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Draw the scene with random position, size, rotation, shade and sensor noise."""
    width, height = size
    s = _SUPERSAMPLE
    background = _jitter(COLOURS[scene.background], rng)
    colour = _jitter(COLOURS[scene.colour], rng)
    image = Image.new("RGB", (width * s, height * s), background)
    draw = ImageDraw.Draw(image)

    radius = rng.uniform(0.22, 0.4) * min(width, height) * s
    cx = rng.uniform(radius, width * s - radius)
    cy = rng.uniform(radius, height * s - radius)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if scene.shape in ("circle", "ring"):
        draw.ellipse(box, fill=colour)
        if scene.shape == "ring":
            inner = radius * rng.uniform(0.45, 0.6)
            draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=background)
    else:
        # Small turns only: a square turned 45 degrees would be a diamond.
        turn = math.radians(rng.uniform(-15, 15))
        cos, sin = math.cos(turn) * radius, math.sin(turn) * radius
        outline = [
            (cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in _OUTLINES[scene.shape]
        ]
        draw.polygon(outline, fill=colour)

    image = image.resize(size, Image.Resampling.BOX)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 4, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def write_pictures(folder: Path, count: int, seed: int) -> list[tuple[Path, Scene]]:
    """Write ``count`` JPEG pictures to ``folder``; distinct scenes until all are used."""
    rng = random.Random(seed)
    scenes = all_scenes()
    rng.shuffle(scenes)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        scene = scenes[i % len(scenes)]
        # Neutral names: the caption must not leak into anything but the pixels.
        path = folder / f"picture-{i:05d}.jpg"
        render(scene, rng).save(path, quality=90)
        written.append((path, scene))
    return written
