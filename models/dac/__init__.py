"""DAC (Kumar et al., 2023; descriptinc/descript-audio-codec): 44.1/24/16 kHz RVQ codecs."""

from __future__ import annotations

from pathlib import Path

from codecstream.errors import CheckpointMismatchError
from codecstream.contract import ModelSpec

from .checkpoint import read_dac_checkpoint
from .codec import DacCodec
from .config import DAC_16KHZ, DAC_24KHZ, DAC_44KHZ, DacConfig

__all__ = ["DacCodec", "DacConfig", "DAC_44KHZ", "DAC_24KHZ", "DAC_16KHZ", "SPECS"]


def _spec(name: str, config: DacConfig, hub_id: str, summary: str) -> ModelSpec:
    def build(cfg: DacConfig) -> DacCodec:
        return DacCodec(cfg, name=name)

    def read(path: Path):  # type: ignore[no-untyped-def]
        cfg, state = read_dac_checkpoint(path, config)
        if cfg.sampling_rate != config.sampling_rate:
            raise CheckpointMismatchError(f"{path} is a {cfg.sampling_rate} Hz DAC, not {name}")
        return cfg, state

    return ModelSpec(
        name=name, summary=summary, build=build, default_config=config, read_weights=read,
        hub_id=hub_id, hub_patterns=("config.json", "model.safetensors"),
        reference="codecstream.models.dac.reference:reference_roundtrip",
    )


SPECS = [
    _spec("dac-44khz", DAC_44KHZ, "descript/dac_44khz", "DAC 44.1 kHz, 86 Hz, RVQ 9x1024 (7.75 kbps), exact streaming"),
    _spec("dac-24khz", DAC_24KHZ, "descript/dac_24khz", "DAC 24 kHz, 75 Hz, RVQ 32x1024 (24 kbps), exact streaming"),
    _spec("dac-16khz", DAC_16KHZ, "descript/dac_16khz", "DAC 16 kHz, 50 Hz, RVQ 12x1024 (6 kbps), exact streaming"),
]
