"""Vocos (Siuzdak, 2023): Fourier-based vocoders on mel spectrograms and on EnCodec tokens."""

from __future__ import annotations

from pathlib import Path

from codecstream.contract import ModelSpec

from .checkpoint import read_vocos_checkpoint
from .codec import VocosEncodec, VocosMel
from .config import VOCOS_ENCODEC_24KHZ, VOCOS_MEL_24KHZ, VocosConfig

__all__ = ["VocosMel", "VocosEncodec", "VocosConfig", "VOCOS_MEL_24KHZ", "VOCOS_ENCODEC_24KHZ", "SPECS"]


def _build_mel(config: VocosConfig) -> VocosMel:
    return VocosMel(config, name="vocos-mel-24khz")


def _build_encodec(config: VocosConfig) -> VocosEncodec:
    return VocosEncodec(config, name="vocos-encodec-24khz")


def _read_mel(path: Path):  # type: ignore[no-untyped-def]
    return read_vocos_checkpoint(path, VOCOS_MEL_24KHZ)


def _read_encodec(path: Path):  # type: ignore[no-untyped-def]
    return read_vocos_checkpoint(path, VOCOS_ENCODEC_24KHZ)


SPECS = [
    ModelSpec(
        name="vocos-mel-24khz",
        summary="Vocos 24 kHz vocoder on 100-band log-mel (hop 256), exact streaming: 309 ms",
        build=_build_mel,
        default_config=VOCOS_MEL_24KHZ,
        read_weights=_read_mel,
        hub_id="charactr/vocos-mel-24khz",
        hub_patterns=("config.yaml", "pytorch_model.bin"),
        reference="codecstream.models.vocos.reference:reference_mel",
    ),
    ModelSpec(
        name="vocos-encodec-24khz",
        summary="Vocos 24 kHz vocoder on EnCodec tokens (1.5-12 kbps), exact streaming: 380 ms",
        build=_build_encodec,
        default_config=VOCOS_ENCODEC_24KHZ,
        read_weights=_read_encodec,
        hub_id="charactr/vocos-encodec-24khz",
        hub_patterns=("config.yaml", "pytorch_model.bin"),
        ignore_keys=(r"^encodec_quantizer\.layers\.\d+\.(inited|cluster_size|embed_avg)$",),
        reference="codecstream.models.vocos.reference:reference_encodec",
    ),
]
