"""SNAC (Siuzdak et al., 2024): multi-scale neural audio codec behind Orpheus TTS."""

from __future__ import annotations

from pathlib import Path

from codecstream.contract import ModelSpec

from .checkpoint import read_snac_checkpoint
from .codec import SnacCodec
from .config import SNAC_24KHZ, SNAC_32KHZ, SNAC_44KHZ, SnacConfig

__all__ = ["SnacCodec", "SnacConfig", "SNAC_24KHZ", "SNAC_32KHZ", "SNAC_44KHZ", "SPECS"]


def _spec(name: str, config: SnacConfig, hub_id: str, summary: str) -> ModelSpec:
    def build(cfg: SnacConfig) -> SnacCodec:
        return SnacCodec(cfg, name=name)

    def read(path: Path):  # type: ignore[no-untyped-def]
        cfg, state = read_snac_checkpoint(path, config)
        if cfg.sampling_rate != config.sampling_rate:
            from codecstream.errors import CheckpointMismatchError

            raise CheckpointMismatchError(f"{path} is a {cfg.sampling_rate} Hz SNAC, not {name}")
        return cfg, state

    return ModelSpec(
        name=name, summary=summary, build=build, default_config=config, read_weights=read,
        hub_id=hub_id, hub_patterns=("config.json", "pytorch_model.bin"),
        reference="codecstream.models.snac.reference:reference_roundtrip",
    )


SPECS = [
    _spec("snac-24khz", SNAC_24KHZ, "hubertsiuzdak/snac_24khz", "SNAC 24 kHz speech codec (Orpheus), 3 levels x 4096 at 12/23/47 Hz, exact streaming"),
    _spec("snac-32khz", SNAC_32KHZ, "hubertsiuzdak/snac_32khz", "SNAC 32 kHz, 4 levels x 4096, 32-frame block attention, exact streaming"),
    _spec("snac-44khz", SNAC_44KHZ, "hubertsiuzdak/snac_44khz", "SNAC 44.1 kHz, 4 levels x 4096, 32-frame block attention, exact streaming"),
]
