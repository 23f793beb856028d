"""DACVAE (the ``optimizerai/vocos`` fork's ``vocos/dac/vae.py``): the seed card's ``dacvae``
latent model, 48 kHz, each channel a mono pass, 1024-dim posterior means per channel."""

from __future__ import annotations

from pathlib import Path

from codecstream.contract import ModelSpec

from .checkpoint import read_dacvae_checkpoint
from .codec import DacVaeCodec
from .config import DACVAE_LARGE, DACVAE_MID, DACVAE_SMALL, DacVaeConfig

__all__ = ["DacVaeCodec", "DacVaeConfig", "DACVAE_SMALL", "DACVAE_MID", "DACVAE_LARGE", "SPECS"]


def _build(config: DacVaeConfig) -> DacVaeCodec:
    return DacVaeCodec(config, name="dacvae")


def _read(path: Path):  # type: ignore[no-untyped-def]
    return read_dacvae_checkpoint(path, DACVAE_SMALL)


SPECS = [
    ModelSpec(
        name="dacvae",
        summary="DACVAE (seed's dac-vae-small, inferred preset), 48 kHz stereo as 2 mono passes, 23.4 Hz x 2x1024-dim latents, exact streaming",
        build=_build, default_config=DACVAE_SMALL, read_weights=_read,
        hub_id="optimizerai/vocos", hub_patterns=("dac-vae-small.json", "dac-vae-small.safetensors"),
    ),
]
