"""EnCodec (Défossez et al., 2022): the causal 24 kHz codec behind Bark and Vocos-EnCodec."""

from __future__ import annotations

from pathlib import Path

from codecstream.errors import CheckpointMismatchError
from codecstream.registry import ModelSpec

from .checkpoint import TRAINING_ONLY_KEYS, read_encodec_checkpoint
from .codec import EncodecCodec
from .config import ENCODEC_24KHZ, EncodecConfig
from .reference import reference_roundtrip

__all__ = ["EncodecCodec", "EncodecConfig", "ENCODEC_24KHZ", "SPECS"]


def _build_24khz(config: EncodecConfig) -> EncodecCodec:
    return EncodecCodec(config, name="encodec-24khz")


def _read_24khz(path: Path):  # type: ignore[no-untyped-def]
    config, state = read_encodec_checkpoint(path, ENCODEC_24KHZ)
    if (config.sample_rate, config.channels, config.causal) != (24_000, 1, True):
        raise CheckpointMismatchError(
            f"{path} describes a {config.sample_rate} Hz, {config.channels}-channel, "
            f"{'causal' if config.causal else 'non-causal'} EnCodec, not encodec-24khz"
        )
    return config, state


SPECS = [
    ModelSpec(
        name="encodec-24khz",
        summary="EnCodec 24 kHz mono, 75 Hz, RVQ up to 32x1024 (1.5-24 kbps), causal: 13.3 ms",
        build=_build_24khz,
        default_config=ENCODEC_24KHZ,
        read_weights=_read_24khz,
        hub_id="facebook/encodec_24khz",
        hub_patterns=("config.json", "model.safetensors"),
        ignore_keys=TRAINING_ONLY_KEYS,
        reference=reference_roundtrip,
    ),
]
