"""The HiFi-GAN plugins: audio → log-mel (its training frontend) and log-mel → audio."""

from __future__ import annotations

from codecstream.contract import FeatureCodes
from codecstream.errors import ShapeError
from codecstream.plugin import Codec
from codecstream.streaming.spectral import StreamingLogMel, mel_filterbank

from .config import HifiganConfig
from .generator import build_generator

__all__ = ["HifiganCodec"]


class HifiganCodec(Codec):
    """HiFi-GAN V1: ``encode`` is the mel frontend it was trained on (reflect padding of
    ``(n_fft - hop) / 2``, no centring, magnitude with 1e-9 inside the root, Slaney mel, log
    clipped at 1e-5); ``decode`` is the generator. ``T`` samples give ``T // hop`` frames
    (for ``T`` a multiple of the hop) and ``F`` frames give ``F · hop`` samples, aligned: output
    sample ``t`` resynthesises input sample ``t``.
    """

    def __init__(self, config: HifiganConfig, name: str = "hifigan") -> None:
        super().__init__()
        if config.win_size != config.n_fft:
            raise ShapeError("this frontend needs win_size == n_fft (true of the published configs)")
        self.config = config
        self.name = name
        self.sample_rate = config.sampling_rate
        self.channels = 1
        self.hop_length = config.hop_size
        pad = (config.n_fft - config.hop_size) // 2
        self.encoder = StreamingLogMel(
            n_fft=config.n_fft,
            hop_length=config.hop_size,
            filterbank=mel_filterbank(
                sample_rate=config.sampling_rate, n_fft=config.n_fft, n_mels=config.num_mels,
                f_min=config.fmin, f_max=config.fmax, scale="slaney", norm="slaney",
            ),
            padding=(pad, pad),
            pad_mode="reflect",
            log_floor=1e-5,
            magnitude_eps=1e-9,
            persistent=False,  # jik876 checkpoints hold the generator only
        )
        self.decoder = build_generator(config)
        self.code_format = FeatureCodes(config.num_mels, "log-mel features")
