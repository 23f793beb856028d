"""Mimi hyper-parameters (kyutai's ``moshi.models.loaders`` defaults; transformers' ``MimiConfig``
carries the same facts under its own names)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

from ..blocks.seanet import SeanetConfig

__all__ = ["MimiConfig", "MIMI"]


@dataclass(frozen=True)
class MimiConfig:
    sample_rate: int = 24_000
    frame_rate: float = 12.5
    # SEANet (causal, zero-padded, no LSTM, identity skips)
    dimension: int = 512
    n_filters: int = 64
    ratios: tuple[int, ...] = (8, 6, 5, 4)  # decoder order
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    n_residual_layers: int = 1
    dilation_base: int = 2
    compress: int = 2
    # the two transformers (encoder side at 25 Hz, decoder side likewise)
    num_heads: int = 8
    num_layers: int = 8
    ff_dim: int = 2048
    context: int = 250
    layer_scale: float = 0.01
    max_period: float = 10_000.0
    # split residual VQ: 1 semantic code-book, the rest acoustic, both over the same latent
    codebook_dim: int = 256
    codebook_size: int = 2048
    num_codebooks: int = 32
    num_semantic: int = 1
    default_codebooks: int = 8  # what moshi's get_mimi sets (1.1 kbps)

    @property
    def encoder_hop(self) -> int:
        """Samples per SEANet frame (the transformers run at this rate, 25 Hz)."""
        return math.prod(self.ratios)

    @property
    def hop_length(self) -> int:
        """Samples per code frame (1920 at 12.5 Hz)."""
        return round(self.sample_rate / self.frame_rate)

    @property
    def resample_stride(self) -> int:
        return self.hop_length // self.encoder_hop

    def seanet(self) -> SeanetConfig:
        """The SEANet half (EnCodec's module tree, no LSTM)."""
        return SeanetConfig(
            channels=1, dimension=self.dimension, n_filters=self.n_filters,
            n_residual_layers=self.n_residual_layers, ratios=self.ratios, kernel_size=self.kernel_size,
            last_kernel_size=self.last_kernel_size, residual_kernel_size=self.residual_kernel_size,
            dilation_base=self.dilation_base, causal=True, pad_mode="constant", true_skip=True,
            compress=self.compress, lstm_layers=0,
        )

    @classmethod
    def from_transformers(cls, data: Mapping[str, Any]) -> "MimiConfig":
        """A transformers ``MimiConfig`` ``config.json``."""
        if data.get("model_type", "mimi") != "mimi":
            raise CheckpointMismatchError(f"config.json describes a {data.get('model_type')!r} model, not Mimi")
        try:
            hidden = int(data.get("hidden_size", 512))
            heads = int(data.get("num_attention_heads", 8))
            unsupported = {
                "use_causal_conv": (data.get("use_causal_conv", True), True),
                "use_conv_shortcut": (data.get("use_conv_shortcut", False), False),
                "num_key_value_heads": (int(data.get("num_key_value_heads", heads)), heads),
                "head_dim": (int(data.get("head_dim") or hidden // heads), hidden // heads),
                "upsample_groups": (int(data.get("upsample_groups", hidden)), hidden),
                "audio_channels": (int(data.get("audio_channels", 1)), 1),
                "hidden_act": (data.get("hidden_act", "gelu"), "gelu"),
            }
            for name, (value, required) in unsupported.items():
                if value != required:
                    raise CheckpointMismatchError(f"config.json has {name}={value!r}; Mimi here needs {required!r}")
            return cls(
                sample_rate=int(data.get("sampling_rate", 24000)),
                frame_rate=float(data.get("frame_rate", 12.5)),
                dimension=hidden,
                n_filters=int(data.get("num_filters", 64)),
                ratios=tuple(int(r) for r in data.get("upsampling_ratios", (8, 6, 5, 4))),
                kernel_size=int(data.get("kernel_size", 7)),
                last_kernel_size=int(data.get("last_kernel_size", 3)),
                residual_kernel_size=int(data.get("residual_kernel_size", 3)),
                n_residual_layers=int(data.get("num_residual_layers", 1)),
                dilation_base=int(data.get("dilation_growth_rate", 2)),
                compress=int(data.get("compress", 2)),
                num_heads=heads,
                num_layers=int(data.get("num_hidden_layers", 8)),
                ff_dim=int(data.get("intermediate_size", 2048)),
                context=int(data.get("sliding_window", 250)),
                layer_scale=float(data.get("layer_scale_initial_scale", 0.01)),
                max_period=float(data.get("rope_theta", 10000.0)),
                codebook_dim=int(data.get("vector_quantization_hidden_dimension", data.get("codebook_dim", 256))),
                codebook_size=int(data.get("codebook_size", 2048)),
                num_codebooks=int(data.get("num_quantizers", 32)),
                num_semantic=int(data.get("num_semantic_quantizers", 1)),
                default_codebooks=min(8, int(data.get("num_quantizers", 32))),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointMismatchError(f"config.json is not a Mimi config: {exc}") from exc


#: kyutai's published Mimi (``tokenizer-e351c8d8-checkpoint125.safetensors``, ``kyutai/mimi``).
MIMI = MimiConfig()
