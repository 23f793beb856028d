"""Windowed decoding: the approximate streaming mode, for any decoder, with a stated latency.

Peers stream by re-decoding windows of recent frames and keeping the middle (Orpheus) or
cross-fading overlaps (NeuTTS). :class:`WindowedDecoderStream` does this for any model: to
emit frames ``[a, b)`` it decodes frames ``[a - context, b + lookahead)`` offline and keeps the
part for ``[a, b)``; with ``crossfade_frames = X`` it also holds back the last ``X`` frames of
each block and fades them into the next block's start. The stream reports its latency (from
the lookahead, the block size and the fade) like every other stream; its error against the
exact stream is for the caller to measure, and it vanishes once context and lookahead cover
the decoder's receptive field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import OptionError, StreamStateError
from .options import MAX_WINDOW_FRAMES
from .streams import _Stream

if TYPE_CHECKING:
    from .plugin import Codec

__all__ = ["WindowedDecoderStream"]


class WindowedDecoderStream(_Stream):
    """Codes in, audio out, by re-decoding windows (see the module docstring).

    Args:
        lookahead_frames: ``R``, future frames each block waits for.
        context_frames: ``L``, past frames decoded with each block (``decoder_stream`` defaults
            it to the model's ``default_context_frames``).
        block_frames: frames emitted per window decode (more: less compute, more latency).
        crossfade_frames: frames faded between consecutive windows (0: plain crop).
        options: options of the model's exact decoder, used for each window.
    """

    def __init__(
        self,
        model: "Codec",
        batch_size: int = 1,
        *,
        lookahead_frames: int,
        context_frames: int,
        block_frames: int = 1,
        crossfade_frames: int = 0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, batch_size, dict(options or {}))
        align = model.decoder_alignment
        for name, value in (("lookahead_frames", lookahead_frames), ("context_frames", context_frames), ("crossfade_frames", crossfade_frames)):
            if not isinstance(value, int) or value < 0:
                raise OptionError(f"{name} must be a non-negative integer, got {value!r}")
        if not isinstance(block_frames, int) or block_frames < 1 or block_frames % align:
            raise OptionError(f"block_frames must be a positive multiple of {align} for {model.name}, got {block_frames!r}")
        if crossfade_frames > block_frames:
            raise OptionError(f"crossfade_frames ({crossfade_frames}) cannot exceed block_frames ({block_frames})")
        # Bounds the frames (so the work and memory) of each window decode and of the codes held.
        span = context_frames + block_frames + lookahead_frames
        if span > MAX_WINDOW_FRAMES:
            raise OptionError(
                f"context_frames + block_frames + lookahead_frames must be at most {MAX_WINDOW_FRAMES}, got {span}"
            )
        self.lookahead_frames = lookahead_frames
        self.context_frames = context_frames
        self.block_frames = block_frames
        self.crossfade_frames = crossfade_frames
        self._codes: Any = None  # frames [self._base, received) of codes
        self._base = 0
        self._received = 0
        self._done = 0  # frames decoded as blocks (the last `crossfade` of them held, not yet out)
        self._held: Tensor | None = None  # the fade tail: output of the last crossfade frames
        self.samples_out = 0

    # -- timing -------------------------------------------------------------------------
    def samples_after(self, frames: int) -> int:
        """Samples returned in total after ``frames`` frames (before flush)."""
        ready = max(0, frames - self.lookahead_frames) // self.block_frames * self.block_frames
        return max(0, ready - self.crossfade_frames) * self.model.hop_length if ready else 0

    def _latency_samples(self) -> tuple[int, int]:
        """Closed form of :func:`~codecstream.latency.decoder_latency` for :meth:`samples_after`:
        the last frame of a block arrives ``lookahead + block − 1`` frames after the block's
        first, and the fade holds ``crossfade`` more; the first release needs ``lookahead`` plus
        enough whole blocks to exceed the fade."""
        hop, fade, block = self.model.hop_length, self.crossfade_frames, self.block_frames
        first = self.lookahead_frames + block * (fade // block + 1)
        return (self.lookahead_frames + block - 1 + fade) * hop, (first - 1) * hop

    def split(self) -> list["WindowedDecoderStream"]:
        raise StreamStateError("a windowed stream re-decodes windows of codes it holds; split and merge are for exact streams")

    @classmethod
    def merge(cls, streams: Any) -> "WindowedDecoderStream":
        raise StreamStateError("a windowed stream re-decodes windows of codes it holds; split and merge are for exact streams")

    # -- streaming ----------------------------------------------------------------------
    def push(self, codes: Any) -> Tensor:
        self._check_open("push")
        codes = self.model.check_codes(codes, self.batch_size)
        frames = self.model.num_frames(codes)
        self._codes = codes if self._codes is None else self.model.concat_codes([self._codes, codes])
        self._received += frames
        pieces = []
        while self._received - self.lookahead_frames - self._done >= self.block_frames:
            pieces.append(self._emit(self._done + self.block_frames, final=False))
        return self._join(pieces)

    def flush(self) -> Tensor:
        self._check_open("flush")
        self._flushed = True
        if self._codes is None or self._done >= self._received and self._held is None:
            return self._join([])
        return self._join([self._emit(self._received, final=True)])

    def reset(self) -> None:
        super().reset()
        self._codes, self._base, self._received, self._done, self._held = None, 0, 0, 0, None
        self.samples_out = 0

    def _join(self, pieces: list[Tensor]) -> Tensor:
        out = torch.cat(pieces, dim=-1) if pieces else self.model.empty_audio(self.batch_size)
        self.samples_out += out.shape[-1]
        return out

    def _emit(self, end: int, *, final: bool) -> Tensor:
        """Decode the window for block ``[done, end)`` and return what is now due: the block's
        frames, less the last ``crossfade`` ones (held), plus the previous block's held frames
        faded into this window's decode of them."""
        hop, align, fade = self.model.hop_length, self.model.decoder_alignment, self.crossfade_frames
        start = self._done - (fade if self._held is not None else 0)  # first output frame due
        first = max(0, start - self.context_frames) // align * align
        last = self._received if final else min(self._received, end + self.lookahead_frames)
        window = self.model.slice_codes(self._codes, first - self._base, last - self._base)
        with torch.inference_mode():
            audio = self.model.decode_window(window, self.options)
        begin = (start - first) * hop
        stop = audio.shape[-1] if final else (end - fade - first) * hop
        out = audio[..., begin:stop].clone()
        if self._held is not None:
            n = min(self._held.shape[-1], out.shape[-1])
            ramp = torch.linspace(0, 1, n + 2, dtype=out.dtype, device=out.device)[1:-1]
            out[..., :n] = self._held[..., :n] * (1 - ramp) + out[..., :n] * ramp
        self._held = None if final or fade == 0 else audio[..., stop : stop + fade * hop]
        self._done = end
        keep_from = max(0, self._done - fade - self.context_frames) // align * align  # codes still needed
        if keep_from > self._base:
            self._codes = self.model.slice_codes(self._codes, keep_from - self._base, self._received - self._base)
            self._base = keep_from
        return out
