"""The two Vocos plugins: mel-spectrogram vocoder and EnCodec-token vocoder, streamed exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from codecstream.contract import CodeLevel, FeatureCodes, IndexCodes, TokenSpec, clamp_length
from codecstream.errors import OptionError, WeightsUnavailableError
from codecstream.latents import LatentAutoencoder, LatentCodec
from codecstream.options import Option, check_options
from codecstream.plugin import Codec
from codecstream.streaming import StreamContext, StreamingModule, StreamingSequential
from codecstream.streaming.module import StreamState
from codecstream.streaming.pointwise import set_condition
from codecstream.streaming.spectral import StreamingLogMel, mel_filterbank

from ..encodec.config import ENCODEC_24KHZ
from ..encodec.quantizer import ResidualVQ
from ..blocks.seanet import build_encoder
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
        self.code_format = FeatureCodes(config.n_mels, "log-mel features")

    def latents(self, **options: Any) -> LatentAutoencoder:
        """The log-mel features as continuous latents ``[B, L, n_mels]``."""
        check_options((), options, what=f"{self.name} latents")
        config, hop = self.config, self.config.hop_length
        pad = self.encoder.padding[0] + self.encoder.padding[1]
        trim = hop if config.padding == "center" else 0  # the ISTFT head's centre padding
        return LatentAutoencoder(
            self,
            latent_dim=config.n_mels,
            encode_length=lambda n: clamp_length((n + pad - config.mel_n_fft) // config.mel_hop_length + 1),
            decode_length=lambda frames: clamp_length(frames * hop - trim),
        )


class VocosEncodec(_Vocos):
    """``vocos-encodec-24khz``: EnCodec 24 kHz codes (1.5/3/6/12 kbps: 2/4/8/16 code-books)
    → audio, and audio → codes through the EnCodec encoder.

    The decoder embeds the codes with its own copy of the EnCodec code-books, sums them, and
    conditions every AdaLayerNorm on the bandwidth (inferred from the code-book count).
    Latency: decoder 9119 samples (27 frames of ConvNeXt lookahead and 1.5 of ISTFT overlap,
    less the Hann window's zero first sample); encoder: EnCodec's 320 samples.
    """

    codebook_weights: Tensor
    encodec_encoder: StreamingModule
    encodec_quantizer: ResidualVQ

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
        self.code_format = IndexCodes(
            self.codebook_size, self.max_codebooks, allowed_counts={k: f"{b} kbps" for b, k in self.books_per_bandwidth.items()}
        )
        self.register_buffer("codebook_weights", torch.randn(self.max_codebooks * self.codebook_size, encodec.dimension))
        if config.with_encodec_encoder:
            self.encodec_encoder = cast(StreamingModule, build_encoder(encodec))  # causal 24 kHz: streams
            self.encodec_quantizer = ResidualVQ(encodec.num_codebooks, encodec.codebook_size, encodec.dimension)
            with torch.no_grad():  # random models: the decoder's table is EnCodec's code-books, as published
                table = torch.cat([layer.embed for layer in self.encodec_quantizer.codebooks[: self.max_codebooks]])
                self.codebook_weights.copy_(table)
        else:
            self.encoder_kind = "none"
            self.missing_encoder = WeightsUnavailableError(
                f"{self.name} was loaded without EnCodec 24 kHz weights, so it decodes codes but cannot "
                "encode audio: put encodec_24khz-d7cc33bc.th (or the facebook/encodec_24khz files) in the "
                "checkpoint directory"
            )
        self.stream_through(_EncodecEncoder(self), _ConditionedDecoder(self))

    def option_specs(self) -> tuple[Option, ...]:
        bandwidths = tuple(float(b) for b in self.config.bandwidths)
        return (Option("bandwidth", "encoder", float, "bit-rate of the EnCodec codes in kbps (default: the highest)", choices=bandwidths, unit="kbps"),)

    def parse_encoder_options(self, values: dict[str, Any]) -> int:
        """``bandwidth`` in kbps, one of ``config.bandwidths`` (None: the highest, 12 kbps)."""
        bandwidth = values.get("bandwidth")
        if bandwidth is None:
            return self.max_codebooks
        if float(bandwidth) not in self.books_per_bandwidth:
            raise OptionError(
                f"{self.name} decodes {', '.join(str(b) for b in self.config.bandwidths)} kbps codes; got {bandwidth}"
            )
        return self.books_per_bandwidth[float(bandwidth)]

    def codes_to_features(self, codes: Tensor) -> Tensor:
        """``[B, K, F]`` codes → ``[B, 128, F]``: the sum of each code-book's embedding."""
        offsets = torch.arange(codes.shape[1], device=codes.device) * self.codebook_size
        indices = (codes + offsets[None, :, None]).transpose(0, 1)  # [K, B, F], as Vocos sums
        return F.embedding(indices, self.codebook_weights).sum(dim=0).transpose(1, 2)

    def bandwidth_index(self, num_codebooks: int) -> int:
        """The AdaLayerNorm condition for codes of ``num_codebooks`` code-books."""
        return sorted(self.books_per_bandwidth.values()).index(num_codebooks)

    def latents(self, *, bandwidth: float = 6.0, **options: Any) -> LatentAutoencoder:
        """The summed code embeddings at ``bandwidth`` kbps as continuous latents ``[B, L, 128]``:
        any ``[B, 128, F]`` sums decode (a generative model's output need not be a code sum),
        the backbone conditioned on that bandwidth."""
        check_options((), options, what=f"{self.name} latents")
        books, hop, dim = self.encoder_options(bandwidth=bandwidth), self.hop_length, int(self.codebook_weights.shape[1])
        codec = LatentCodec(
            self, latent_dim=dim,
            encoder=_EncodecEncoder(self, books, features=True), decoder=_ConditionedDecoder(self, books),
        )
        return LatentAutoencoder(
            codec, latent_dim=dim,
            encode_length=lambda n: (n + hop - 1) // hop,
            decode_length=lambda frames: clamp_length(frames * hop),
        )


class _EncodecEncoder(StreamingModule):
    """Audio → EnCodec codes (``num_codebooks``, or the stream's ``ctx.options``), or their
    summed Vocos embeddings with ``features=True``."""

    vocos: VocosEncodec

    def __init__(self, vocos: VocosEncodec, num_codebooks: int | None = None, *, features: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "vocos", vocos)  # the codec's modules, not this one's
        self.num_codebooks = num_codebooks
        self.features = features

    def _codes(self, latents: Tensor | None, ctx: StreamContext) -> Tensor | None:
        if latents is None:
            return None
        books = self.num_codebooks if self.num_codebooks is not None else ctx.options
        codes = self.vocos.encodec_quantizer.encode(latents, books)
        return self.vocos.codes_to_features(codes) if self.features else codes

    def step(self, audio: Tensor, ctx: StreamContext) -> Tensor:
        return self._codes(self.vocos.encodec_encoder.step(audio, ctx), ctx)  # type: ignore[return-value]

    def flush(self, ctx: StreamContext) -> Tensor | None:
        return self._codes(self.vocos.encodec_encoder.flush(ctx), ctx)

    def output_count(self, n_in: int) -> int:
        return self.vocos.encodec_encoder.output_count(n_in)  # type: ignore[no-any-return]


@dataclass
class ConditionedState(StreamState):
    pass  # its presence marks a stream whose AdaLayerNorms are conditioned


class _ConditionedDecoder(StreamingModule[ConditionedState]):
    """Codes (or, with ``num_codebooks`` fixed, summed features) → audio, every AdaLayerNorm
    conditioned on the bandwidth at the stream's first push (inferred from the codes)."""

    vocos: VocosEncodec

    def __init__(self, vocos: VocosEncodec, num_codebooks: int | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "vocos", vocos)
        self.num_codebooks = num_codebooks

    def step(self, x: Tensor, ctx: StreamContext) -> Tensor:
        books = self.num_codebooks if self.num_codebooks is not None else x.shape[1]
        ctx.state(self, lambda: self._start(ctx, books))
        features = x if self.num_codebooks is not None else self.vocos.codes_to_features(x)
        return self.vocos.decoder.step(features, ctx)  # type: ignore[no-any-return]

    def _start(self, ctx: StreamContext, num_codebooks: int) -> ConditionedState:
        set_condition(self.vocos.decoder, ctx, self.vocos.bandwidth_index(num_codebooks))
        return ConditionedState()

    def flush(self, ctx: StreamContext) -> Tensor | None:
        return self.vocos.decoder.flush(ctx)  # type: ignore[no-any-return]

    def output_count(self, n_in: int) -> int:
        return self.vocos.decoder.output_count(n_in)  # type: ignore[no-any-return]
