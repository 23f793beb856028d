"""Encoder and decoder streams: push chunks of any length, get what is final, flush at the end.

A stream owns one :class:`~codecstream.streaming.StreamContext` on a shared model, so any
number of streams can run on one loaded model. The offline ``Codec.encode`` / ``decode`` are
one push and one flush of these same streams, so streaming and offline share one code path.

Typical use::

    with model.encoder_stream(bandwidth=6.0) as enc, model.decoder_stream() as dec:
        for chunk in chunks:                 # [1, C, n] float, any n, even 1
            audio_out = dec.push(enc.push(chunk))
        audio_out = dec.push(enc.flush())
        audio_out = dec.flush()
    print(enc.latency_ms + dec.latency_ms, "ms algorithmic latency")
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any, Callable, Hashable, Sequence, TypeVar

import torch
from torch import Tensor

from .errors import StreamStateError
from .latency import decoder_latency, encoder_latency
from .streaming import StreamContext
from .validation import check_sample_rate

if TYPE_CHECKING:
    from .plugin import Codec

__all__ = ["EncoderStream", "DecoderStream"]

StreamT = TypeVar("StreamT", bound="_Stream")


class _Stream:
    def __init__(self, model: "Codec", batch_size: int, options: Any = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise StreamStateError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self.options = options
        self._ctx = StreamContext(batch_size, options)
        self._flushed = False
        self._closed = False
        self._timing_cache: tuple[int, int] | None = None

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def latency_samples(self) -> int:
        """Steady-state algorithmic latency in audio samples (see :mod:`codecstream.latency`)."""
        return self._timing()[0]

    @property
    def startup_latency_samples(self) -> int:
        """Algorithmic latency of the very first output, in audio samples."""
        return self._timing()[1]

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.model.sample_rate

    @property
    def startup_latency_ms(self) -> float:
        return 1000.0 * self.startup_latency_samples / self.model.sample_rate

    @property
    def latency(self) -> int:
        """Deprecated name of :attr:`latency_samples` (kept for one release)."""
        warnings.warn("stream.latency is now stream.latency_samples", DeprecationWarning, stacklevel=2)
        return self.latency_samples

    @property
    def startup_latency(self) -> int:
        """Deprecated name of :attr:`startup_latency_samples` (kept for one release)."""
        warnings.warn("stream.startup_latency is now stream.startup_latency_samples", DeprecationWarning, stacklevel=2)
        return self.startup_latency_samples

    def _timing(self) -> tuple[int, int]:
        if self._timing_cache is None:
            self._timing_cache = self._latency_samples()
        return self._timing_cache

    def _model_timing(self, side: str, derive: Callable[[], tuple[int, int]]) -> tuple[int, int]:
        """An exact stream's timing is the model's (options never change it): derived once per
        model and side, since the derivation walks the layer graph thousands of times."""
        cache: dict[str, tuple[int, int]] = self.model.__dict__.setdefault("_stream_timing", {})
        if side not in cache:
            cache[side] = derive()
        return cache[side]

    def _latency_samples(self) -> tuple[int, int]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state: the next push starts a new stream."""
        self._ctx.reset()
        self._flushed = False
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows -----------------------------------------------------------------------------
    def split(self: StreamT) -> list[StreamT]:
        """One stream per row, each going on exactly where its row was: its model state, the
        input it holds and the stream's counters. Outputs are what the batch would have given."""
        self._check_open("split")
        return [self._rows([row]) for row in range(self.batch_size)]

    @classmethod
    def merge(cls: type[StreamT], streams: Sequence[StreamT]) -> StreamT:
        """One stream of every given stream's rows, in order; they must be of one model and
        options, at the same point (the same samples and frames so far, equal buffer shapes),
        or :class:`~codecstream.errors.StreamStateError`."""
        if not streams:
            raise StreamStateError("nothing to merge")
        first = streams[0]
        for stream in streams:
            stream._check_open("merge")
            if stream.model is not first.model or type(stream) is not type(first):
                raise StreamStateError("cannot merge streams of different models or kinds")
            if stream._counters() != first._counters():
                raise StreamStateError(f"cannot merge streams at different points: {stream._counters()} vs {first._counters()}")
        merged = copy.copy(first)
        merged._ctx = StreamContext.merge([s._ctx for s in streams])
        merged.batch_size = merged._ctx.batch_size
        merged._merge_buffers(streams)
        return merged

    def _rows(self: StreamT, rows: list[int]) -> StreamT:
        out = copy.copy(self)
        out._ctx = self._ctx.select(rows)
        out.batch_size = len(rows)
        out._select_buffers(rows)
        return out

    def _counters(self) -> tuple[Any, ...]:
        """What must be equal for streams to merge."""
        return ()

    def _select_buffers(self, rows: list[int]) -> None:
        pass

    def _merge_buffers(self, streams: Sequence[Any]) -> None:
        pass

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise StreamStateError(f"cannot {action}: the stream is closed")
        if self._flushed:
            raise StreamStateError(f"cannot {action} after flush(); call reset() to start a new stream")


class EncoderStream(_Stream):
    """Audio in (``[B, channels, n]`` floats, any ``n``), codes out as soon as they are final.

    Input reaches the model in whole multiples of ``model.encoder_block`` samples (so tiny
    pushes cost little and compute is spread over pushes), and in full as soon as the samples
    received let the model release a new frame: buffering never delays an output.
    """

    def __init__(
        self, model: "Codec", batch_size: int = 1, *, sample_rate: int | None = None, options: Any = None
    ) -> None:
        super().__init__(model, batch_size, options)
        check_sample_rate(sample_rate, model.encoder_sample_rate)
        self._pending: Tensor | None = None
        self.samples_in = 0  # samples pushed so far
        self.frames_out = 0  # frames returned so far

    def _latency_samples(self) -> tuple[int, int]:
        return self._model_timing("encoder", lambda: encoder_latency(self.model.encoder_frames, self.model.hop_length))

    def push(self, audio: Any) -> Any:
        """Consume ``audio`` and return the codes that are now final (possibly zero frames)."""
        self._check_open("push")
        audio = self.model.check_audio(audio, self.batch_size)
        self.samples_in += audio.shape[-1]
        if self._pending is not None:
            audio = torch.cat([self._pending, audio], dim=-1)
        if self.model.encoder_frames(self.samples_in) > self.frames_out:
            usable = audio.shape[-1]  # a frame is due: feed everything
        else:
            usable = audio.shape[-1] - audio.shape[-1] % self.model.encoder_block
        self._pending = audio[..., usable:] if usable < audio.shape[-1] else None
        if usable == 0:
            return self.model.empty_codes(self.batch_size, self.options)
        with torch.inference_mode():
            codes = self.model.encoder_step(audio[..., :usable], self._ctx)
        self.frames_out += self.model.num_frames(codes)
        return codes

    def flush(self) -> Any:
        """End the stream: encode what is left, padded as the offline model pads its end."""
        self._check_open("flush")
        self._flushed = True
        padding = self.model.end_padding(self.samples_in, self.options) if self.samples_in else 0
        if padding:
            zeros = torch.zeros(self.batch_size, self.model.channels, padding, dtype=self.model.dtype, device=self.model.device)
            self._pending = zeros if self._pending is None else torch.cat([self._pending, zeros], dim=-1)
        with torch.inference_mode():
            parts = []
            if self._pending is not None:
                parts.append(self.model.encoder_step(self._pending, self._ctx))
                self._pending = None
            parts.append(self.model.encoder_flush(self._ctx))
        parts = [p for p in parts if p is not None]
        if not parts:
            return self.model.empty_codes(self.batch_size, self.options)
        return self.model.concat_codes(parts)

    def reset(self) -> None:
        super().reset()
        self._pending = None
        self.samples_in = 0
        self.frames_out = 0

    def _counters(self) -> tuple[Any, ...]:
        return (self.samples_in, self.frames_out, self.options)

    def _select_buffers(self, rows: list[int]) -> None:
        if self._pending is not None:
            self._pending = self._pending[rows]

    def _merge_buffers(self, streams: Sequence[Any]) -> None:
        if self._pending is not None:
            self._pending = torch.cat([s._pending for s in streams])


class DecoderStream(_Stream):
    """Codes in (any number of frames per push), audio ``[B, channels, n]`` out as soon as final."""

    def __init__(self, model: "Codec", batch_size: int = 1, *, options: Any = None) -> None:
        super().__init__(model, batch_size, options)
        self._layout: Hashable | None = None
        self._layout_set = False
        self.samples_out = 0  # samples returned so far

    def _latency_samples(self) -> tuple[int, int]:
        return self._model_timing("decoder", lambda: decoder_latency(self.model.decoder_samples, self.model.hop_length))

    def push(self, codes: Any) -> Tensor:
        """Consume ``codes`` and return the audio that is now final (possibly zero samples)."""
        self._check_open("push")
        codes = self.model.check_codes(codes, self.batch_size)
        layout = self.model.code_layout(codes)
        if self.model.num_frames(codes) == 0:
            pass  # an empty push has no layout to hold the stream to
        elif not self._layout_set:
            self._layout, self._layout_set = layout, True
        elif layout != self._layout:
            raise StreamStateError(
                f"code layout changed mid-stream ({self._layout} then {layout}); "
                "open a new stream (or reset()) to change it"
            )
        with torch.inference_mode():
            audio = self.model.decoder_step(codes, self._ctx)
        self.samples_out += audio.shape[-1]
        return audio

    def flush(self) -> Tensor:
        """End the stream and return the rest of the audio."""
        self._check_open("flush")
        self._flushed = True
        with torch.inference_mode():
            audio = self.model.decoder_flush(self._ctx)
        if audio is None:
            return self.model.empty_audio(self.batch_size)
        self.samples_out += audio.shape[-1]
        return audio

    def reset(self) -> None:
        super().reset()
        self._layout, self._layout_set = None, False
        self.samples_out = 0

    def _counters(self) -> tuple[Any, ...]:
        return (self.samples_out, self._layout, self._layout_set, self.options)
