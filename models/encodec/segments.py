"""EnCodec 48 kHz: streamed segment by segment, exactly as the official model segments offline.

The 48 kHz model normalises every conv's output over the whole input (time group norm) and
scales each segment to unit RMS, so no part of a segment is final before all of it is known.
The official code cuts the signal into segments of ``segment_length`` samples (1 s) starting
every ``segment_stride`` samples (0.99 s), codes each one with its scale, and decodes by
overlap-adding the decoded segments with triangular weights. The streams here do the same
computation, one segment at a time: the encoder releases a segment as soon as its last sample
arrives (latency 1 s), the decoder releases each decoded segment up to where the next one
starts (the shared 10 ms wait for the next segment's share of the cross-fade).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import torch
from torch import Tensor

from codecstream.contract import CodeFormat
from codecstream.errors import DTypeError, NonFiniteError, OptionError, ShapeError
from codecstream.streaming import StreamContext, StreamingModule
from codecstream.streaming.module import RowInts, StreamState, row_ints, uniform
from codecstream.validation import as_tensor, check_code_tensor

from .codec import EncodecCodec
from .config import EncodecConfig

__all__ = ["SegmentCodes", "SegmentFormat", "EncodecSegmentCodec", "segment_weights"]


@dataclass(frozen=True)
class SegmentCodes:
    """Codes of consecutive segments: ``codes[i]`` ``[B, K, frames_i]`` int64 and ``scales[i]``
    ``[B, 1]`` (the segment's RMS; ``None`` when the model does not normalise). Every segment
    but the last covers ``segment_length`` samples (150 frames at 48 kHz).

    ``list(SegmentCodes)`` gives ``(codes, scale)`` pairs, the ``encodec`` package's
    ``EncodedFrame`` list, and the decoder accepts such a list too.
    """

    codes: tuple[Tensor, ...]
    scales: tuple[Tensor | None, ...]
    batch_size: int = 1

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(zip(self.codes, self.scales))


def segment_weights(length: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The official cross-fade weights of a decoded segment of ``length`` samples: a triangle
    ``0.5 − |t − 0.5|`` over ``t`` evenly spaced in (0, 1), endpoints excluded. (A shorter last
    segment takes the start of a whole segment's triangle, as the official code does.)"""
    t = torch.linspace(0, 1, length + 2, dtype=dtype, device=device)[1:-1]
    return 0.5 - (t - 0.5).abs()


def _pairs_batch_size(codes: Any) -> int:
    if isinstance(codes, SegmentCodes):
        return codes.batch_size
    pairs = list(codes)
    return int(pairs[0][0].shape[0]) if pairs else 1


class SegmentFormat(CodeFormat):
    """:class:`SegmentCodes` (or a list of ``(codes, scale)`` pairs); frames are segments."""

    def __init__(self, config: EncodecConfig) -> None:
        if config.segment_length is None:
            raise ValueError("segment codes need a config with segment_s")
        self.config = config
        self.segment_frames = config.segment_length // config.hop_length  # frames of every segment but the last

    def empty(self, batch_size: int, options: Any, *, device: torch.device, dtype: torch.dtype) -> SegmentCodes:
        return SegmentCodes((), (), batch_size)

    def batch_size(self, codes: Any) -> int:
        return _pairs_batch_size(codes)

    def num_frames(self, codes: SegmentCodes) -> int:
        return len(codes)

    def slice(self, codes: SegmentCodes, start: int, end: int) -> SegmentCodes:
        return SegmentCodes(codes.codes[start:end], codes.scales[start:end], codes.batch_size)

    def concat(self, parts: Sequence[Any]) -> SegmentCodes:
        present = [p for p in parts if p is not None]
        batch = present[0].batch_size if present else 1
        return SegmentCodes(tuple(c for p in present for c in p.codes), tuple(s for p in present for s in p.scales), batch)

    def layout(self, codes: SegmentCodes) -> Hashable:
        return int(codes.codes[0].shape[1]) if len(codes) else None

    def to_arrays(self, codes: SegmentCodes) -> list[Tensor]:
        """For the codes file: all segments' codes joined along time, the scales ``[B, S]``
        (empty ``[B, 0]`` without normalisation) and each segment's frame count ``[S]``."""
        if not len(codes):
            raise ShapeError("no segments to store")
        joined = torch.cat(list(codes.codes), dim=-1)
        scales = [s for s in codes.scales if s is not None]
        scale_array = torch.cat(scales, dim=1) if scales else joined.new_zeros(joined.shape[0], 0, dtype=torch.float32)
        frames = torch.tensor([c.shape[-1] for c in codes.codes])
        return [joined, scale_array.float(), frames]

    def from_arrays(self, arrays: list[Tensor]) -> SegmentCodes:
        if len(arrays) != 3:
            raise ShapeError(f"segment codes files hold 3 arrays (codes, scales, frames), got {len(arrays)}")
        joined, scale_array, frames = arrays
        pieces = torch.split(joined, [int(f) for f in frames], dim=-1)
        scales: tuple[Tensor | None, ...] = (
            tuple(scale_array[:, i : i + 1] for i in range(len(pieces))) if scale_array.shape[1] else (None,) * len(pieces)
        )
        return SegmentCodes(tuple(pieces), scales, int(joined.shape[0]))

    def check(self, codes: Any, batch_size: int | None, *, model: str, device: torch.device, dtype: torch.dtype) -> SegmentCodes:
        config = self.config
        if not isinstance(codes, SegmentCodes):
            try:
                pairs = [(c, s) for c, s in codes]
            except (TypeError, ValueError):
                raise DTypeError(
                    f"{model} decodes SegmentCodes (or a list of (codes, scale) pairs), got {type(codes).__name__}"
                ) from None
            codes = SegmentCodes(tuple(c for c, _ in pairs), tuple(s for _, s in pairs), _pairs_batch_size(pairs))
        checked, scales = [], []
        for index, (segment, scale) in enumerate(codes):
            segment = check_code_tensor(
                segment, codebook_size=config.codebook_size, max_codebooks=config.num_codebooks,
                device=device, batch_size=batch_size, what=f"segment {index} codes",
            )
            if index < len(codes) - 1 and segment.shape[-1] != self.segment_frames:
                raise ShapeError(
                    f"segment {index} has {segment.shape[-1]} frames; every segment but the last has {self.segment_frames}"
                )
            checked.append(segment)
            scales.append(self._check_scale(scale, segment.shape[0], index, model, device, dtype))
        if len({c.shape[1] for c in checked}) > 1:
            raise ShapeError("all segments must have the same number of code-books")
        return SegmentCodes(tuple(checked), tuple(scales), codes.batch_size)

    def _check_scale(self, scale: Any, batch: int, index: int, model: str, device: torch.device, dtype: torch.dtype) -> Tensor | None:
        if not self.config.normalize:
            if scale is not None:
                raise OptionError(f"{model} does not normalise: segment {index} must have no scale")
            return None
        if scale is None:
            raise ShapeError(f"{model} normalises segments: segment {index} needs its scale")
        scale = as_tensor(scale, f"segment {index} scale")
        if not scale.is_floating_point() or tuple(scale.shape) != (batch, 1):
            raise ShapeError(f"segment {index} scale must be a [{batch}, 1] float tensor, got {tuple(scale.shape)} {scale.dtype}")
        if not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
            raise NonFiniteError(f"segment {index} scale must be finite and positive")
        return scale.to(device=device, dtype=dtype)


@dataclass
class EncoderState(StreamState):
    pending: Tensor | None  # [B, C, n] samples from the start of the next segment on
    samples: RowInts  # per row, samples received so far


@dataclass
class DecoderState(StreamState):
    tail: Tensor | None  # [B, C, n] decoded samples past the latest segment's stride, weighted
    tail_weight: Tensor | None  # [B, n] their summed weights (the same in every row)


class SegmentEncoder(StreamingModule[EncoderState]):
    """Audio → :class:`SegmentCodes`, a segment as soon as its last sample is in."""

    codec: "EncodecSegmentCodec"

    def __init__(self, codec: "EncodecSegmentCodec") -> None:
        super().__init__()
        object.__setattr__(self, "codec", codec)  # the codec's modules, not this one's

    def init_state(self, batch_size: int, like: Tensor) -> EncoderState:
        return EncoderState(pending=None, samples=row_ints(batch_size))

    def step(self, audio: Tensor, ctx: StreamContext) -> SegmentCodes:  # type: ignore[override]
        codec, state = self.codec, self.state(ctx, audio)
        state.samples += audio.shape[-1]
        state.pending = audio if state.pending is None else torch.cat([state.pending, audio], dim=-1)
        parts: list[tuple[Tensor, Tensor | None]] = []
        while state.pending.shape[-1] >= codec.segment_length:
            parts.append(codec.encode_segment(state.pending[..., : codec.segment_length], ctx.options))
            state.pending = state.pending[..., codec.hop_length :]
        return _codes(parts, audio.shape[0])

    def flush(self, ctx: StreamContext) -> SegmentCodes | None:  # type: ignore[override]
        codec, state = self.codec, self._state(ctx)
        if state is None or state.pending is None:
            return None
        # The official loop starts a segment at every stride before the end of the signal.
        parts = []
        pending = state.pending
        samples = uniform(state.samples, "samples")
        consumed = samples - pending.shape[-1]
        while consumed < samples and pending.shape[-1]:
            parts.append(codec.encode_segment(pending[..., : codec.segment_length], ctx.options))
            pending = pending[..., codec.hop_length :]
            consumed += codec.hop_length
        state.pending = None
        return _codes(parts, ctx.batch_size)

    def output_count(self, n_in: int) -> int:
        """Segments released after ``n_in`` samples."""
        if n_in < self.codec.segment_length:
            return 0
        return (n_in - self.codec.segment_length) // self.codec.hop_length + 1


class SegmentDecoder(StreamingModule[DecoderState]):
    """:class:`SegmentCodes` → audio, each segment's samples up to the next one's start."""

    codec: "EncodecSegmentCodec"

    def __init__(self, codec: "EncodecSegmentCodec") -> None:
        super().__init__()
        object.__setattr__(self, "codec", codec)

    def init_state(self, batch_size: int, like: Tensor) -> DecoderState:
        return DecoderState(tail=None, tail_weight=None)

    def step(self, codes: SegmentCodes, ctx: StreamContext) -> Tensor:  # type: ignore[override]
        codec = self.codec
        state = ctx.state(self, lambda: self.init_state(ctx.batch_size, codec.empty_audio(1)))
        out = [codec.empty_audio(ctx.batch_size)]
        for segment, scale in codes:
            audio = codec.decode_segment(segment, scale)
            weight = segment_weights(max(audio.shape[-1], codec.decoded_length), dtype=audio.dtype, device=audio.device)
            weight = weight[: audio.shape[-1]]
            weighted, total = audio * weight, weight
            if state.tail is not None and state.tail_weight is not None:
                # Cross-fade with the previous segment's overhang (cut where this segment ends,
                # as the official output ends with the last segment).
                n = min(state.tail.shape[-1], audio.shape[-1])
                weighted = torch.cat([weighted[..., :n] + state.tail[..., :n], weighted[..., n:]], dim=-1)
                total = torch.cat([total[:n] + state.tail_weight[0, :n], total[n:]])
            final = min(codec.hop_length, audio.shape[-1])
            out.append(weighted[..., :final] / total[:final])
            state.tail, state.tail_weight = weighted[..., final:], total[final:].expand(ctx.batch_size, -1)
        return torch.cat(out, dim=-1)

    def flush(self, ctx: StreamContext) -> Tensor | None:
        state = self._state(ctx)
        if state is None or state.tail is None or state.tail_weight is None or state.tail.shape[-1] == 0:
            return None
        return state.tail / state.tail_weight[:, None, :]

    def output_count(self, n_in: int) -> int:
        return n_in * self.codec.hop_length


def _codes(parts: Sequence[tuple[Tensor, Tensor | None]], batch_size: int) -> SegmentCodes:
    return SegmentCodes(tuple(c for c, _ in parts), tuple(s for _, s in parts), batch_size)


class EncodecSegmentCodec(EncodecCodec):
    """EnCodec with time group norm and segments (the 48 kHz stereo model).

    Codes are :class:`SegmentCodes`; streams push and count whole segments (``hop_length`` is
    the segment stride, so the engine's latency arithmetic works in segments). Latency: encoder
    ``segment_length`` samples (1 s: a segment is coded once complete), decoder 0 (each segment
    releases everything before the next one's start). The windowed mode does not apply.
    """

    windowed_decoding = False

    def __init__(self, config: EncodecConfig, name: str = "encodec-48khz") -> None:
        if config.segment_length is None or config.segment_stride is None:
            raise ValueError("EncodecSegmentCodec needs a config with segment_s")
        super().__init__(config, name=name)
        self.segment_length: int = config.segment_length
        self.hop_length = config.segment_stride
        self.code_format = SegmentFormat(config)
        # Decoded samples of a whole segment (its frames times the code hop).
        self.decoded_length = -(-config.segment_length // config.hop_length) * config.hop_length
        self.stream_through(SegmentEncoder(self), SegmentDecoder(self))

    @property
    def quantizer_part(self) -> None:
        return None  # each segment is quantised inside the segment paths

    # -- one segment, whole -------------------------------------------------------------
    def encode_segment(self, audio: Tensor, num_codebooks: int) -> tuple[Tensor, Tensor | None]:
        """``[B, C, n]`` audio (``n <= segment_length``) → its codes and scale."""
        scale = None
        if self.config.normalize:
            volume = audio.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()
            scale = 1e-8 + volume
            audio = audio / scale
            scale = scale.view(-1, 1)
        return self.quantizer.encode(self.encoder(audio), num_codebooks), scale

    def decode_segment(self, codes: Tensor, scale: Tensor | None) -> Tensor:
        audio = self.decoder(self.quantizer.decode(codes).to(self.dtype))
        return audio if scale is None else audio * scale.view(-1, 1, 1).to(audio.dtype)
