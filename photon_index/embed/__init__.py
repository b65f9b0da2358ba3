"""Embedding: pictures and texts to vectors with the SigLIP towers."""

from photon_index.embed.encoder import (
    DEVICES,
    Encoders,
    ImageEncoder,
    TextEncoder,
    normalize,
    text_image_probability,
)

__all__ = [
    "DEVICES",
    "Encoders",
    "ImageEncoder",
    "TextEncoder",
    "normalize",
    "text_image_probability",
]
