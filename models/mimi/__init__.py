"""Mimi (kyutai, 2024; the codec of Moshi): 24 kHz ↔ 12.5 Hz codes, fully causal."""

from __future__ import annotations

from pathlib import Path

from codecstream.errors import CheckpointMismatchError
from codecstream.contract import ModelSpec

from .checkpoint import read_mimi_checkpoint
from .codec import MimiCodec
from .config import MIMI, MimiConfig

__all__ = ["MimiCodec", "MimiConfig", "MIMI", "SPECS"]


def _build(config: MimiConfig) -> MimiCodec:
    return MimiCodec(config, name="mimi")


def _read(path: Path):  # type: ignore[no-untyped-def]
    config, state = read_mimi_checkpoint(path, MIMI)
    if config.sample_rate != 24_000:
        raise CheckpointMismatchError(f"{path} is a {config.sample_rate} Hz Mimi; mimi is the 24 kHz model")
    return config, state


SPECS = [
    ModelSpec(
        name="mimi", summary="Mimi 24 kHz, 12.5 Hz, split RVQ up to 32x2048 (default 8: 1.1 kbps), causal: 80 ms",
        build=_build, default_config=MIMI, read_weights=_read,
        hub_id="kyutai/mimi", hub_patterns=("config.json", "model.safetensors"),
    ),
]
