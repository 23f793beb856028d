"""NeuCodec (neuphonic): 16 kHz speech → 50 Hz codes of one 65536-entry FSQ → 24 kHz speech.

The encoder joins a semantic branch (w2v-BERT 2.0 layer 16 over Kaldi filter banks normalised
per utterance) and an acoustic conv branch, then quantises; the decoder is a Vocos-style
transformer with an ISTFT head. Both attend over everything and normalise over everything, so
neither streams exactly: ``encode`` and ``decode`` run offline, and
``decoder_stream(mode="windowed", ...)`` streams by re-decoding windows (its error against
``decode`` is measured per lookahead by ``codecstream latency-report``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecstream.contract import CodeLevel, DecoderKind, EncoderKind, IndexCodes, TokenSpec
from codecstream.errors import OptionError
from codecstream.plugin import Codec

from .acoustic import AcousticEncoder
from .config import NeuCodecConfig
from .decoder import Generator
from .features import kaldi_mel_filters, semantic_features
from .semantic import SemanticAdapter, W2vBert

__all__ = ["NeuCodecCodec"]

#: Past frames a windowed stream decodes with each block by default: NeuTTS's 1 s of look-back.
DEFAULT_CONTEXT_FRAMES = 50


class NeuCodecCodec(Codec):
    """NeuCodec: codes ``[B, 1, frames]`` int64 in ``[0, 65536)``; ``encode`` takes 16 kHz mono
    ``[B, 1, T]`` and gives ``min(⌈(T + 1) / 320⌉, semantic frames)`` frames; ``decode`` gives
    ``[B, 1, frames · 480]`` at 24 kHz. ``config.with_encoder=False`` builds the decoder alone
    (a checkpoint without the w2v-BERT weights, or to save memory)."""

    encoder_kind: EncoderKind = "offline"
    decoder_kind: DecoderKind = "windowed"
    mel_filters: Tensor
    default_context_frames = DEFAULT_CONTEXT_FRAMES

    def __init__(self, config: NeuCodecConfig, name: str = "neucodec") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.output_sample_rate
        self.channels = 1
        self.hop_length = config.hop_length
        if not config.with_encoder:
            self.encoder_kind = "none"
            self.missing_encoder = OptionError(f"{self.name} was loaded without its encoder (no w2v-BERT weights)")
        self.code_format = IndexCodes(config.codebook_size, 1)
        self.token_spec = TokenSpec(levels=(CodeLevel(1, config.codebook_size, config.hop_length, config.output_sample_rate),))
        if config.with_encoder:
            self.semantic_model = W2vBert(config.semantic)
            self.SemanticEncoder_module = SemanticAdapter(config.semantic.hidden_size)
            self.CodecEnc = AcousticEncoder(config.encoder_hidden_size, config.downsampling_ratios, config.hidden_size)
            self.fc_prior = nn.Linear(config.quantization_dim, config.quantization_dim)
            self.register_buffer("mel_filters", kaldi_mel_filters(sample_rate=config.input_sample_rate), persistent=False)
        self.generator = Generator(config)
        self.fc_post_a = nn.Linear(config.quantization_dim, config.hidden_size)

    @property
    def encoder_sample_rate(self) -> int:
        return self.config.input_sample_rate

    # -- encoder: offline ---------------------------------------------------------------
    def semantic_input(self, audio: Tensor) -> Tensor:
        """Padded 16 kHz audio ``[B, 1, T]`` → w2v-BERT input features ``[B, frames, 160]``."""
        return torch.stack([semantic_features(a[0], self.mel_filters) for a in audio]).to(self.dtype)

    def encode_offline(self, audio: Tensor, *, features: Tensor | None = None, **options: Any) -> Tensor:
        """Checked 16 kHz ``[B, 1, T]`` audio → ``[B, 1, frames]`` codes, offline.

        ``features`` (``[B, frames, 160]``) replaces the built-in filter-bank front end (to
        feed precomputed w2v-BERT features)."""
        if options:
            raise OptionError(f"{self.name} takes no encoder options, got {sorted(options)}")
        if audio.shape[-1] == 0:
            return torch.zeros(audio.shape[0], 1, 0, dtype=torch.long, device=self.device)
        hop = self.config.encoder_hop
        audio = F.pad(audio, (0, hop - audio.shape[-1] % hop))  # always 1..hop samples, as the reference
        if features is None:
            features = self.semantic_input(audio)
        semantic = self.SemanticEncoder_module(self.semantic_model(features.to(self.dtype)).transpose(1, 2))
        acoustic = self.CodecEnc(audio)
        frames = min(semantic.shape[-1], acoustic.shape[-1])
        joined = torch.cat([semantic[..., :frames], acoustic[..., :frames]], dim=1)
        codes = self.generator.quantizer.encode(self.fc_prior(joined.transpose(1, 2)))
        return codes[:, None, :]

    # -- decoder: offline (windows of it stream) --------------------------------------
    def decode_offline(self, codes: Tensor) -> Tensor:
        """Checked ``[B, 1, frames]`` codes → ``[B, 1, frames · 480]`` audio at 24 kHz."""
        latents = self.fc_post_a(self.generator.quantizer.decode(codes[:, 0]))
        return self.generator(latents)  # type: ignore[no-any-return]
