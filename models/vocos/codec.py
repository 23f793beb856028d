"""The two Vocos plugins: mel-spectrogram vocoder and EnCodec-token vocoder, streamed exactly."""

from __future__ import annotations

from typing import Any, Hashable

import torch
import torch.nn.functional as F
from torch import Tensor

from codecstream.errors import CodeRangeError, OptionError, WeightsUnavailableError
from codecstream.latents import LatentAutoencoder, clamp_length
from codecstream.options import Option
from codecstream.plugin import Codec, CodeLevel, TokenSpec
from codecstream.streaming import StreamContext, StreamingSequential
from codecstream.streaming.pointwise import set_condition
from codecstream.streaming.spectral import StreamingLogMel, mel_filterbank
from codecstream.validation import check_code_tensor, check_feature_tensor

from ..encodec.config import ENCODEC_24KHZ
from ..encodec.quantizer import ResidualVQ
from ..encodec.seanet import build_encoder
from .backbone import build_backbone, build_head
from .config import VocosConfig

__all__ = ["VocosMel", "VocosEncodec"]


class _Vocos(Codec):
    """Shared decoder side: features → ConvNeXt backbone → ISTFT head."""

    def __init__(self, config: VocosConfig, name: str) -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.sample_rate = config.sample_rate
        self.channels = 1
        self.hop_length = config.hop_length
        self.decoder = StreamingSequential({"backbone": build_backbone(config), "head": build_head(config)})

    def decoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.decoder.flush(ctx)

    def decoder_samples(self, n_frames: int) -> int:
        return self.decoder.output_count(n_frames)


class VocosMel(_Vocos):
    """``vocos-mel-24khz``: audio → 100-band log-mel (the "encoder") and log-mel → audio.

    The features are float ``[B, n_mels, frames]``; with ``center`` padding ``T`` samples give
    ``1 + T // 256`` frames and ``F`` frames decode to ``256·(F - 1)`` samples.
    Latency: encoder 512 samples (a frame's window reaches 512 samples ahead of its centre);
    decoder 7423 samples (27 frames of ConvNeXt lookahead, 2 of ISTFT overlap, less the Hann
    window's zero first sample).
    """

    def __init__(self, config: VocosConfig, name: str = "vocos-mel") -> None:
        super().__init__(config, name)
        if config.mel_n_fft % config.mel_hop_length or config.mel_hop_length != config.hop_length:
            raise ValueError("mel hop must equal the head hop and divide the mel n_fft")
        pad = config.mel_n_fft // 2 if config.mel_padding == "center" else (config.mel_n_fft - config.mel_hop_length) // 2
        self.encoder = StreamingLogMel(
            n_fft=config.mel_n_fft,
            hop_length=config.mel_hop_length,
            filterbank=mel_filterbank(sample_rate=config.sample_rate, n_fft=config.mel_n_fft, n_mels=config.n_mels),
            padding=(pad, pad),
            pad_mode="reflect",
            log_floor=1e-7,
        )

    def encoder_step(self, audio: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.encoder.step(audio, ctx)

    def encoder_flush(self, ctx: StreamContext, options: Any) -> Tensor | None:
        return self.encoder.flush(ctx)

    def encoder_frames(self, n_samples: int) -> int:
        return self.encoder.output_count(n_samples)

    def empty_codes(self, batch_size: int, options: Any) -> Tensor:
        return torch.zeros(batch_size, self.config.n_mels, 0, dtype=self.dtype, device=self.device)

    def latents(self) -> LatentAutoencoder:
        """The log-mel features as continuous latents ``[B, L, n_mels]``."""
        config, hop = self.config, self.config.hop_length
        pad = self.encoder.padding[0] + self.encoder.padding[1]
        trim = hop if config.padding == "center" else 0  # the ISTFT head's centre padding
        return LatentAutoencoder(
            self,
            latent_dim=config.n_mels,
            encode_length=lambda n: clamp_length((n + pad - config.mel_n_fft) // config.mel_hop_length + 1),
            decode_length=lambda frames: clamp_length(frames * hop - trim),
        )

    def check_codes(self, features: Any, batch_size: int | None = None) -> Tensor:
        return check_feature_tensor(
            features, channels=self.config.n_mels, model=self.name, dtype=self.dtype, device=self.device,
            batch_size=batch_size, what="log-mel features",
        )

    def decoder_step(self, features: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.decoder.step(features, ctx)


class VocosEncodec(_Vocos):
    """``vocos-encodec-24khz``: EnCodec 24 kHz codes (1.5/3/6/12 kbps: 2/4/8/16 code-books)
    → audio, and audio → codes through the EnCodec encoder.

    The decoder embeds the codes with its own copy of the EnCodec code-books, sums them, and
    conditions every AdaLayerNorm on the bandwidth (inferred from the code-book count).
    Latency: decoder 9119 samples (27 frames of ConvNeXt lookahead and 1.5 of ISTFT overlap,
    less the Hann window's zero first sample); encoder: EnCodec's 320 samples.
    """

    def __init__(self, config: VocosConfig, name: str = "vocos-encodec") -> None:
        super().__init__(config, name)
        encodec = ENCODEC_24KHZ
        self.books_per_bandwidth = {b: encodec.codebooks_for_bandwidth(b) for b in config.bandwidths}
        self.max_codebooks = max(self.books_per_bandwidth.values())
        self.codebook_size = encodec.codebook_size
        self.token_spec = TokenSpec(
            levels=(CodeLevel(self.max_codebooks, self.codebook_size, encodec.hop_length, encodec.sample_rate),),
            bandwidths_kbps=tuple(config.bandwidths),
        )
        self.register_buffer("codebook_weights", torch.randn(self.max_codebooks * self.codebook_size, encodec.dimension))
        self.has_encoder = config.with_encodec_encoder
        if self.has_encoder:
            self.encodec_encoder = build_encoder(encodec)
            self.encodec_quantizer = ResidualVQ(encodec.num_codebooks, encodec.codebook_size, encodec.dimension)
            with torch.no_grad():  # random models: the decoder's table is EnCodec's code-books, as published
                table = torch.cat([layer.embed for layer in self.encodec_quantizer.layers[: self.max_codebooks]])
                self.codebook_weights.copy_(table)

    # -- encoder side: EnCodec 24 kHz ---------------------------------------------------
    def option_specs(self) -> tuple[Option, ...]:
        bandwidths = tuple(float(b) for b in self.config.bandwidths)
        return (Option("bandwidth", "encoder", float, "bit-rate of the EnCodec codes in kbps (default: the highest)", choices=bandwidths),)

    def encoder_options(self, *, bandwidth: float | None = None) -> int:
        """``bandwidth`` in kbps, one of ``config.bandwidths`` (None: the highest, 12 kbps)."""
        if bandwidth is None:
            return self.max_codebooks
        if float(bandwidth) not in self.books_per_bandwidth:
            raise OptionError(
                f"{self.name} decodes {', '.join(str(b) for b in self.config.bandwidths)} kbps codes; got {bandwidth}"
            )
        return self.books_per_bandwidth[float(bandwidth)]

    def encoder_stream(self, batch_size: int = 1, *, sample_rate: int | None = None, **options: Any):  # type: ignore[no-untyped-def]
        if not self.has_encoder:
            raise WeightsUnavailableError(
                f"{self.name} was loaded without EnCodec 24 kHz weights, so it decodes codes but cannot "
                "encode audio: put encodec_24khz-d7cc33bc.th (or the facebook/encodec_24khz files) in the "
                "checkpoint directory"
            )
        return super().encoder_stream(batch_size, sample_rate=sample_rate, **options)

    def encoder_step(self, audio: Tensor, ctx: StreamContext, num_codebooks: int) -> Tensor:
        return self.encodec_quantizer.encode(self.encodec_encoder.step(audio, ctx), num_codebooks)

    def encoder_flush(self, ctx: StreamContext, num_codebooks: int) -> Tensor | None:
        latents = self.encodec_encoder.flush(ctx)
        return None if latents is None else self.encodec_quantizer.encode(latents, num_codebooks)

    def encoder_frames(self, n_samples: int) -> int:
        return self.encodec_encoder.output_count(n_samples)

    def empty_codes(self, batch_size: int, num_codebooks: int) -> Tensor:
        return torch.zeros(batch_size, num_codebooks, 0, dtype=torch.long, device=self.device)

    # -- decoder side -------------------------------------------------------------------
    def check_codes(self, codes: Any, batch_size: int | None = None) -> Tensor:
        codes = check_code_tensor(
            codes, codebook_size=self.codebook_size, max_codebooks=self.max_codebooks,
            device=self.device, batch_size=batch_size,
        )
        if codes.shape[1] not in self.books_per_bandwidth.values():
            offered = ", ".join(f"{k} ({b} kbps)" for b, k in self.books_per_bandwidth.items())
            raise CodeRangeError(f"{self.name} decodes {offered} code-books, got {codes.shape[1]}")
        return codes

    def code_layout(self, codes: Tensor) -> Hashable:
        return int(codes.shape[1])

    def codes_to_features(self, codes: Tensor) -> Tensor:
        """``[B, K, F]`` codes → ``[B, 128, F]``: the sum of each code-book's embedding."""
        offsets = torch.arange(codes.shape[1], device=codes.device) * self.codebook_size
        indices = (codes + offsets[None, :, None]).transpose(0, 1)  # [K, B, F], as Vocos sums
        return F.embedding(indices, self.codebook_weights).sum(dim=0).transpose(1, 2)

    def decoder_step(self, codes: Tensor, ctx: StreamContext, options: Any) -> Tensor:
        return self.features_step(self.codes_to_features(codes), ctx, codes.shape[1])

    def features_step(self, features: Tensor, ctx: StreamContext, num_codebooks: int) -> Tensor:
        """Decode ``[B, 128, F]`` features made at ``num_codebooks`` code-books."""
        if ctx.get(self.decoder.backbone.norm) is None:  # first push: condition on the bandwidth
            bandwidth_index = sorted(self.books_per_bandwidth.values()).index(num_codebooks)
            set_condition(self.decoder, ctx, bandwidth_index)
        return self.decoder.step(features, ctx)

    def latents(self, *, bandwidth: float = 6.0) -> LatentAutoencoder:
        """The summed code embeddings at ``bandwidth`` kbps as continuous latents ``[B, L, 128]``."""
        from .latents import VocosEncodecLatents

        hop = self.hop_length
        return LatentAutoencoder(
            VocosEncodecLatents(self, self.encoder_options(bandwidth=bandwidth)),
            latent_dim=int(self.codebook_weights.shape[1]),
            encode_length=lambda n: (n + hop - 1) // hop,
            decode_length=lambda frames: clamp_length(frames * hop),
        )
