"""EnCodec architecture hyper-parameters, as the official code and transformers name them."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from codecstream.errors import CheckpointMismatchError

from ..blocks.seanet import SeanetConfig

__all__ = ["EncodecConfig", "ENCODEC_24KHZ", "ENCODEC_32KHZ", "ENCODEC_48KHZ"]


@dataclass(frozen=True)
class EncodecConfig(SeanetConfig):
    """SEANet encoder/decoder (the fields of :class:`SeanetConfig`) + residual VQ."""

    sample_rate: int = 24_000
    codebook_size: int = 1024
    target_bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)
    segment_s: float | None = None  # encode in segments of this many seconds (48 kHz: 1.0)
    overlap: float = 0.01  # fraction of a segment shared with the next
    normalize: bool = False  # scale each segment to unit RMS, keeping the scale with its codes

    @property
    def segment_length(self) -> int | None:
        """Samples per segment (None: the whole signal is one segment)."""
        return None if self.segment_s is None else int(self.segment_s * self.sample_rate)

    @property
    def segment_stride(self) -> int | None:
        """Samples between segment starts (as the official code: ``int((1 - overlap) · length)``)."""
        length = self.segment_length
        return None if length is None else max(1, int((1 - self.overlap) * length))

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
        if data.get("norm_type", "weight_norm") not in ("weight_norm", "time_group_norm"):
            raise CheckpointMismatchError(
                f"config.json uses norm_type={data.get('norm_type')!r}; EnCodec uses weight_norm or time_group_norm"
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
            "norm_type": "norm",
            "chunk_length_s": "segment_s",
            "overlap": "overlap",
            "normalize": "normalize",
        }
        values: dict[str, Any] = {}
        for theirs, ours in mapping.items():
            if theirs in data:
                value = data[theirs]
                values[ours] = tuple(value) if isinstance(value, list) else value
        if values.get("overlap") is None:
            values.pop("overlap", None)
        if "use_conv_shortcut" in data:
            values["true_skip"] = not data["use_conv_shortcut"]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


ENCODEC_24KHZ = EncodecConfig()
#: The MusicGen codec (audiocraft ``encodec_large_nq4_s640``, as ``facebook/encodec_32khz``).
ENCODEC_32KHZ = EncodecConfig(
    sample_rate=32_000, n_filters=64, ratios=(8, 5, 4, 4), causal=False, true_skip=True,
    codebook_size=2048, target_bandwidths=(2.2,),
)
#: Stereo music model: non-causal, time group norm, 1 s segments with 1 % overlap, normalised.
ENCODEC_48KHZ = EncodecConfig(
    sample_rate=48_000, channels=2, causal=False, norm="time_group_norm", segment_s=1.0, normalize=True,
    target_bandwidths=(3.0, 6.0, 12.0, 24.0),
)
