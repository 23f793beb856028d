"""NeuCodec (neuphonic, 2025; the codec of NeuTTS): 16 kHz in, 24 kHz out, 50 Hz FSQ codes."""

from __future__ import annotations

from pathlib import Path

from codecstream.contract import ModelSpec

from .checkpoint import read_neucodec_checkpoint
from .codec import NeuCodecCodec
from .config import NEUCODEC, NeuCodecConfig

__all__ = ["NeuCodecCodec", "NeuCodecConfig", "NEUCODEC", "SPECS"]


def _build(config: NeuCodecConfig) -> NeuCodecCodec:
    return NeuCodecCodec(config, name="neucodec")


def _read(path: Path):  # type: ignore[no-untyped-def]
    return read_neucodec_checkpoint(path, NEUCODEC)


SPECS = [
    ModelSpec(
        name="neucodec", summary="NeuCodec 16 kHz in / 24 kHz out, 50 Hz, one FSQ code of 65536 (0.8 kbps), windowed streaming",
        build=_build, default_config=NEUCODEC, read_weights=_read,
        hub_id="neuphonic/neucodec", hub_patterns=("pytorch_model.bin", "meta.yaml"),
    ),
]
