"""EnCodec (Défossez et al., 2022): the causal 24 kHz codec behind Bark and Vocos-EnCodec, the
32 kHz MusicGen codec and the 48 kHz stereo music model."""

from __future__ import annotations

from pathlib import Path

from codecstream.errors import CheckpointMismatchError
from codecstream.contract import ModelSpec

from .checkpoint import TRAINING_ONLY_KEYS, read_encodec_checkpoint
from .codec import EncodecCodec
from .config import ENCODEC_24KHZ, ENCODEC_32KHZ, ENCODEC_48KHZ, EncodecConfig
from .segments import EncodecSegmentCodec, SegmentCodes

__all__ = [
    "EncodecCodec", "EncodecSegmentCodec", "SegmentCodes", "EncodecConfig",
    "ENCODEC_24KHZ", "ENCODEC_32KHZ", "ENCODEC_48KHZ", "SPECS",
]


def _describe(config: EncodecConfig) -> str:
    return (
        f"a {config.sample_rate} Hz, {config.channels}-channel, {'causal' if config.causal else 'non-causal'}, "
        f"{config.norm} EnCodec"
    )


def _spec(name: str, default: EncodecConfig, summary: str) -> ModelSpec:
    codec_class = EncodecSegmentCodec if default.segment_s is not None else EncodecCodec

    def build(config: EncodecConfig) -> EncodecCodec:
        return codec_class(config, name=name)

    def read(path: Path):  # type: ignore[no-untyped-def]
        config, state = read_encodec_checkpoint(path, default)
        if (config.sample_rate, config.channels, config.causal, config.norm) != (
            default.sample_rate, default.channels, default.causal, default.norm,
        ):
            raise CheckpointMismatchError(f"{path} describes {_describe(config)}, not {name} ({_describe(default)})")
        return config, state

    return ModelSpec(
        name=name, summary=summary, build=build, default_config=default, read_weights=read,
        hub_id=f"facebook/{name.replace('-', '_')}", hub_patterns=("config.json", "model.safetensors"),
        ignore_keys=TRAINING_ONLY_KEYS, reference="codecstream.models.encodec.reference:reference_roundtrip",
    )


SPECS = [
    _spec("encodec-24khz", ENCODEC_24KHZ, "EnCodec 24 kHz mono, 75 Hz, RVQ up to 32x1024 (1.5-24 kbps), causal: 13.3 ms"),
    _spec("encodec-32khz", ENCODEC_32KHZ, "EnCodec 32 kHz mono (MusicGen's codec), 50 Hz, RVQ 4x2048 (2.2 kbps), exact streaming"),
    _spec("encodec-48khz", ENCODEC_48KHZ, "EnCodec 48 kHz stereo, 150 Hz, RVQ up to 16x1024 (3-24 kbps), streamed in 1 s segments"),
]
