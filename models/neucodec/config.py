"""NeuCodec hyper-parameters (transformers' ``NeuCodecConfig`` names where it has them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["NeuCodecConfig", "SemanticConfig", "NEUCODEC"]


@dataclass(frozen=True)
class SemanticConfig:
    """The w2v-BERT 2.0 conformer, cut after ``num_layers`` layers (NeuCodec reads layer 16)."""

    hidden_size: int = 1024
    num_layers: int = 16
    num_heads: int = 16
    intermediate_size: int = 4096
    feature_dim: int = 160  # 80 log-mel bins, two frames stacked
    conv_kernel_size: int = 31
    left_max_positions: int = 64
    right_max_positions: int = 8
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class NeuCodecConfig:
    input_sample_rate: int = 16_000
    output_sample_rate: int = 24_000
    encoder_hidden_size: int = 48
    downsampling_ratios: tuple[int, ...] = (2, 2, 4, 4, 5)
    hidden_size: int = 1024  # acoustic features and the decoder's width
    num_layers: int = 12  # decoder transformer
    num_heads: int = 16
    intermediate_size: int = 4096
    groups: int = 32  # GroupNorm groups in the decoder's ResNet blocks
    quantization_levels: tuple[int, ...] = (4,) * 8
    semantic: SemanticConfig = SemanticConfig()
    with_encoder: bool = True  # False: the decoder alone (a checkpoint without w2v-BERT weights)

    @property
    def encoder_hop(self) -> int:
        """Input samples (16 kHz) per code."""
        return math.prod(self.downsampling_ratios)

    @property
    def hop_length(self) -> int:
        """Output samples (24 kHz) per code."""
        return self.encoder_hop * self.output_sample_rate // self.input_sample_rate

    @property
    def n_fft(self) -> int:
        return 4 * self.hop_length

    @property
    def quantization_dim(self) -> int:
        return self.hidden_size + self.semantic.hidden_size

    @property
    def codebook_size(self) -> int:
        return math.prod(self.quantization_levels)

    @classmethod
    def from_transformers(cls, data: Mapping[str, Any]) -> "NeuCodecConfig":
        if data.get("model_type", "neucodec") != "neucodec":
            raise CheckpointMismatchError(f"config.json describes a {data.get('model_type')!r} model, not NeuCodec")
        try:
            semantic = data.get("semantic_model_config") or {}
            hidden = int(data.get("hidden_size", 1024))
            if int(data.get("quantization_dim", hidden + int(semantic.get("hidden_size", 1024)))) != hidden + int(semantic.get("hidden_size", 1024)):
                raise CheckpointMismatchError("quantization_dim must equal hidden_size + the semantic hidden size")
            if semantic.get("position_embeddings_type", "relative_key") != "relative_key":
                raise CheckpointMismatchError("only relative_key position embeddings (w2v-BERT 2.0) are supported")
            return cls(
                input_sample_rate=int(data.get("input_sampling_rate", 16000)),
                output_sample_rate=int(data.get("output_sampling_rate", 24000)),
                encoder_hidden_size=int(data.get("encoder_hidden_size", 48)),
                downsampling_ratios=tuple(int(r) for r in data.get("downsampling_ratios", (2, 2, 4, 4, 5))),
                hidden_size=hidden,
                num_layers=int(data.get("num_hidden_layers", 12)),
                num_heads=int(data.get("num_attention_heads", 16)),
                intermediate_size=int(data.get("intermediate_size", 4096)),
                quantization_levels=tuple(int(v) for v in data.get("quantization_levels", (4,) * 8)),
                semantic=SemanticConfig(
                    hidden_size=int(semantic.get("hidden_size", 1024)),
                    num_layers=int(semantic.get("num_hidden_layers", 16)),
                    num_heads=int(semantic.get("num_attention_heads", 16)),
                    intermediate_size=int(semantic.get("intermediate_size", 4096)),
                    feature_dim=int(semantic.get("feature_projection_input_dim", 160)),
                    conv_kernel_size=int(semantic.get("conv_depthwise_kernel_size", 31)),
                    left_max_positions=int(semantic.get("left_max_position_embeddings", 64)),
                    right_max_positions=int(semantic.get("right_max_position_embeddings", 8)),
                    layer_norm_eps=float(semantic.get("layer_norm_eps", 1e-5)),
                ),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointMismatchError(f"config.json is not a NeuCodec config: {exc}") from exc


#: neuphonic/neucodec: 16 kHz in, 24 kHz out, 50 Hz, one FSQ code of 65536.
NEUCODEC = NeuCodecConfig()
