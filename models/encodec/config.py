"""EnCodec architecture hyper-parameters, as the official code and transformers name them."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

__all__ = ["EncodecConfig", "ENCODEC_24KHZ"]


@dataclass(frozen=True)
class EncodecConfig:
    """SEANet encoder/decoder + residual VQ (field names follow ``encodec.SEANetEncoder``)."""

    sample_rate: int = 24_000
    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder order; the encoder uses them reversed
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = True
    pad_mode: str = "reflect"
    true_skip: bool = False  # False: 1x1 conv shortcut in residual blocks
    compress: int = 2
    lstm_layers: int = 2
    codebook_size: int = 1024
    target_bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> int:
        """Code frames per second (the official code rounds up)."""
        return math.ceil(self.sample_rate / self.hop_length)

    @property
    def num_codebooks(self) -> int:
        """Code-books at the highest bandwidth."""
        bits = math.log2(self.codebook_size)
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * bits))

    def codebooks_for_bandwidth(self, bandwidth_kbps: float) -> int:
        kbps_per_codebook = math.log2(self.codebook_size) * self.frame_rate / 1000
        return int(max(1, math.floor(bandwidth_kbps / kbps_per_codebook)))

    def bandwidth_for_codebooks(self, num_codebooks: int) -> float:
        return num_codebooks * math.log2(self.codebook_size) * self.frame_rate / 1000

    @classmethod
    def from_transformers(cls, data: Mapping[str, Any]) -> "EncodecConfig":
        """Read a transformers ``EncodecConfig`` ``config.json``."""
        if data.get("model_type", "encodec") != "encodec":
            raise CheckpointMismatchError(f"config.json describes a {data.get('model_type')!r} model, not EnCodec")
        if data.get("norm_type", "weight_norm") != "weight_norm":
            raise CheckpointMismatchError(
                f"config.json uses norm_type={data.get('norm_type')!r}; this plugin runs the "
                "weight-norm (causal, 24 kHz-style) EnCodec"
            )
        if float(data.get("trim_right_ratio", 1.0)) != 1.0:
            raise CheckpointMismatchError("only trim_right_ratio=1.0 is supported")
        if data.get("codebook_dim") not in (None, data.get("hidden_size", 128)):
            raise CheckpointMismatchError("codebook_dim different from hidden_size is not supported")
        mapping = {
            "sampling_rate": "sample_rate",
            "audio_channels": "channels",
            "hidden_size": "dimension",
            "num_filters": "n_filters",
            "num_residual_layers": "n_residual_layers",
            "upsampling_ratios": "ratios",
            "kernel_size": "kernel_size",
            "last_kernel_size": "last_kernel_size",
            "residual_kernel_size": "residual_kernel_size",
            "dilation_growth_rate": "dilation_base",
            "use_causal_conv": "causal",
            "pad_mode": "pad_mode",
            "compress": "compress",
            "num_lstm_layers": "lstm_layers",
            "codebook_size": "codebook_size",
            "target_bandwidths": "target_bandwidths",
        }
        values: dict[str, Any] = {}
        for theirs, ours in mapping.items():
            if theirs in data:
                value = data[theirs]
                values[ours] = tuple(value) if isinstance(value, list) else value
        if "use_conv_shortcut" in data:
            values["true_skip"] = not data["use_conv_shortcut"]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


ENCODEC_24KHZ = EncodecConfig()
