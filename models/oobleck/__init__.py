"""Oobleck (Stability-AI/stable-audio-tools; Evans et al., 2024): Stable Audio Open's VAE."""

from __future__ import annotations

from pathlib import Path

from codecstream.contract import ModelSpec

from .checkpoint import read_oobleck_checkpoint
from .codec import OobleckCodec
from .config import OOBLECK_SAO, OobleckConfig

__all__ = ["OobleckCodec", "OobleckConfig", "OOBLECK_SAO", "SPECS"]


def _build(config: OobleckConfig) -> OobleckCodec:
    return OobleckCodec(config, name="oobleck")


def _read(path: Path):  # type: ignore[no-untyped-def]
    return read_oobleck_checkpoint(path, OOBLECK_SAO)


SPECS = [
    ModelSpec(
        name="oobleck", summary="Stable Audio Open VAE, 44.1 kHz stereo, 21.5 Hz x 64-dim latents, exact streaming",
        build=_build, default_config=OOBLECK_SAO, read_weights=_read,
        hub_id="stabilityai/stable-audio-open-1.0", hub_patterns=("vae/config.json", "vae/diffusion_pytorch_model.safetensors"),
        reference="codecstream.models.oobleck.reference:reference_roundtrip",
    ),
]
